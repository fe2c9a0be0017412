package mcpmsg_test

import (
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

func ExampleParse() {
	body, err := mcpmsg.Parse([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call",`+
		`"params":{"name":"delete\u005fissue","arguments":{"number":42}}}`), mcpmsg.Limits{})
	if err != nil {
		fmt.Println(err)
		return
	}
	m := body.Messages[0]
	fmt.Println(m.Kind, string(m.ID), m.Tool.Name, m.Tool.Arguments["number"])

	_, err = mcpmsg.Parse([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call",`+
		`"params":{"name":"get_issue","NAME":"delete_issue"}}`), mcpmsg.Limits{})
	var perr *mcpmsg.Error
	if errors.As(err, &perr) {
		fmt.Printf("%s\n", mcpmsg.ErrorResponse([]byte(`2`), perr.Code, perr.Message))
	}
	// Output:
	// request 1 delete_issue 42
	// {"jsonrpc":"2.0","id":2,"error":{"code":-32600,"message":"params member \"NAME\" differs from \"name\" only by case"}}
}

func ExampleFoldName() {
	for _, name := range []string{"Repo", " repo", "\uff52\uff45\uff50\uff4f", "\u017fort", "\u212a"} {
		fmt.Printf("%+q folds to %q\n", name, mcpmsg.FoldName(name))
	}

	body, err := mcpmsg.Parse([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call",`+
		`"params":{"name":"delete_issue","arguments":{"repo":"sandbox","Repo":"production"}}}`), mcpmsg.Limits{})
	if err == nil {
		err = body.CheckParams()
	}
	fmt.Println(err)
	// Output:
	// "Repo" folds to "repo"
	// " repo" folds to "repo"
	// "\uff52\uff45\uff50\uff4f" folds to "repo"
	// "\u017fort" folds to "sort"
	// "\u212a" folds to "k"
	// tools/call argument names "Repo" and "repo" in /params/arguments differ only by case, Unicode compatibility form or surrounding space: upstream servers may read them as one (JSON-RPC error -32602)
}
