package stdio

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCommandIdentity: commands that run one program alike have one
// identity however they spell it; commands that differ in what runs (the
// arguments, the environment, the folder, the name a program serving
// several commands is called by) do not.
func TestCommandIdentity(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, base := filepath.Dir(self), filepath.Base(self)
	links := t.TempDir()
	if err := os.Symlink(self, filepath.Join(links, base)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(links, "other-name")); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + dir, "MODE=serve"}
	guarded := Command{Path: self, Args: []string{"-x"}, Env: env}
	tests := []struct {
		name string
		c    Command
		same bool
	}{
		{"as written", guarded, true},
		{"through .", Command{Path: dir + "/./" + base, Args: []string{"-x"}, Env: env}, true},
		{"through ..", Command{Path: dir + "/../" + filepath.Base(dir) + "/" + base, Args: []string{"-x"}, Env: env}, true},
		{"through a link of the same name", Command{Path: filepath.Join(links, base), Args: []string{"-x"}, Env: env}, true},
		{"found in its PATH", Command{Path: base, Args: []string{"-x"}, Env: env}, true},
		{"relative to its folder", Command{Path: "./" + base, Args: []string{"-x"}, Env: env, Dir: dir}, false},
		{"the gateway's folder written out", Command{Path: self, Args: []string{"-x"}, Env: env, Dir: cwd}, true},
		{"other arguments", Command{Path: self, Args: []string{"-y"}, Env: env}, false},
		{"another environment", Command{Path: self, Args: []string{"-x"}, Env: []string{"PATH=" + dir, "MODE=other"}}, false},
		{"the environment in another order", Command{Path: self, Args: []string{"-x"}, Env: []string{"MODE=serve", "PATH=" + dir}}, true},
		{"a variable given twice, the last as the program gets it", Command{Path: self, Args: []string{"-x"}, Env: []string{"MODE=other", "PATH=" + dir, "MODE=serve"}}, true},
		{"a variable given twice, the first as the program gets it", Command{Path: self, Args: []string{"-x"}, Env: []string{"MODE=serve", "PATH=" + dir, "MODE=other"}}, false},
		{"another folder", Command{Path: self, Args: []string{"-x"}, Env: env, Dir: links}, false},
		{"called by another name", Command{Path: filepath.Join(links, "other-name"), Args: []string{"-x"}, Env: env}, false},
		{"not found in its PATH", Command{Path: "no-such-program-here", Args: []string{"-x"}, Env: env}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if same := tt.c.Identity() == guarded.Identity(); same != tt.same {
				t.Errorf("%s and %s alike: %v; want %v", tt.c.Identity(), guarded.Identity(), same, tt.same)
			}
		})
	}
	relative := Command{Path: "./" + base, Args: []string{"-x"}, Env: env, Dir: dir}
	if relative.Identity() != (Command{Path: self, Args: []string{"-x"}, Env: env, Dir: dir}).Identity() {
		t.Errorf("a program relative to its folder is not that folder's program")
	}
}

// TestLookPathRelativeFolders: a program found in a relative folder of
// the command's PATH is that folder's in the command's own folder, as a
// shell started there finds it, and is named absolute, so that exec does
// not look it up again in the gateway's PATH.
func TestLookPathRelativeFolders(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, base := filepath.Dir(self), filepath.Base(self)
	parent, sub := filepath.Dir(dir), filepath.Base(dir)
	for _, tt := range []struct {
		name string
		c    Command
	}{
		{"an empty entry", Command{Path: base, Env: []string{"PATH=/no-such-folder:"}, Dir: dir}},
		{"the folder itself", Command{Path: base, Env: []string{"PATH=."}, Dir: dir}},
		{"a folder below it", Command{Path: base, Env: []string{"PATH=" + sub}, Dir: parent}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.lookPath()
			if err != nil || got != self {
				t.Errorf("lookPath() = %q, %v; want %q", got, err, self)
			}
			if tt.c.Identity() != (Command{Path: self, Env: tt.c.Env, Dir: tt.c.Dir}).Identity() {
				t.Errorf("identity %s is not that of the program it runs", tt.c.Identity())
			}
		})
	}
	// From another folder, the relative entry is that folder's: the
	// program is not there.
	if got, err := (Command{Path: base, Env: []string{"PATH=."}, Dir: t.TempDir()}).lookPath(); err == nil {
		t.Errorf("lookPath() from a folder without the program = %q; want not found", got)
	}
}
