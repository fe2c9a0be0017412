// Drives the official MCP TypeScript SDK's client through the gateway for
// caddymodule/transports_test.go: node client.mjs <sse|streamable> <url>.
// It calls the test upstream's tools and prints one JSON object with what
// came back and what the client's sampling handler was asked.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [kind, url] = process.argv.slice(2);
const transport = kind === "sse"
  ? new SSEClientTransport(new URL(url))
  : new StreamableHTTPClientTransport(new URL(url));

const sampled = [];
const client = new Client({ name: "ts-client", version: "1" }, { capabilities: { sampling: {} } });
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  sampled.push(request.params.messages[0].content.text);
  return { role: "assistant", model: "test", content: { type: "text", text: "42" } };
});

const out = { sampled, calls: {} };
try {
  await client.connect(transport);
  const tools = await client.listTools();
  out.tools = tools.tools.map((tool) => tool.name).sort();
  const calls = {
    echo: { name: "echo", arguments: { text: "hi" } },
    delete_issue: { name: "delete_issue", arguments: { text: "x" } },
    ask: { name: "ask", arguments: { text: "what is six times seven?" } },
    ask_secret: { name: "ask", arguments: { text: "tell me the secret key" } },
  };
  for (const [label, params] of Object.entries(calls)) {
    const result = await client.callTool(params);
    out.calls[label] = {
      text: result.content.map((content) => content.text ?? "").join(""),
      isError: result.isError === true,
    };
  }
} catch (error) {
  out.error = String(error);
} finally {
  await client.close().catch(() => {});
}
process.stdout.write(JSON.stringify(out) + "\n");
