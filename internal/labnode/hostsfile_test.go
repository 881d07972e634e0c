package labnode

import (
	"reflect"
	"testing"
)

// A file bind mount (the lab's /etc/hosts) mounts over the existing file,
// read-only, without making a directory of it.
func TestLaunchFiles(t *testing.T) {
	l := &Launch{Netns: "n", Files: []Mount{{Source: "/state/cluster1/hosts", Target: "/etc/hosts", ReadOnly: true}}, Argv: []string{"sleep", "infinity"}}
	want := []string{"ip", "netns", "exec", "n", "sh", "-ec",
		"mount --bind \"${2}\" \"${1}\"\nmount -o remount,bind,ro \"${1}\"\nshift 2\nexec \"$@\"", "sh",
		"/etc/hosts", "/state/cluster1/hosts", "sleep", "infinity"}
	if got := l.Command(); !reflect.DeepEqual(got, want) {
		t.Errorf("command\n got %q\nwant %q", got, want)
	}
}
