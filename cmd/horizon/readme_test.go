package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's test command and what CI runs are one command: the block
// after "The second is the test command" in the Quick start, the block of
// the Tests section, and the last line of .ci/run must all be it.
func TestCIRunsTheREADMEsTestCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	block := func(after string) string {
		i := strings.Index(string(readme), after)
		if i < 0 {
			t.Fatalf("README has no %q", after)
		}
		m := regexp.MustCompile("(?s)```sh\n(.*?)\n```").FindStringSubmatch(string(readme)[i:])
		if m == nil {
			t.Fatalf("README has no sh block after %q", after)
		}
		return strings.TrimSpace(m[1])
	}
	quick, tests := block("The second is the test command"), block("## Tests")
	lines := strings.Split(strings.TrimSpace(string(ci)), "\n")
	run := strings.TrimSpace(lines[len(lines)-1])
	if quick != tests || run != quick {
		t.Fatalf("Quick start's test command %q, Tests section's %q and .ci/run's %q differ", quick, tests, run)
	}
}
