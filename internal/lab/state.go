package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// State is what Up records in <state>/lab.json, rewritten after every
// process it starts, so that Down (or the next Up after a crash) finds
// every process.
type State struct {
	// StateDir is the absolute state directory.
	StateDir string         `json:"stateDir"`
	BinDir   string         `json:"binDir"`
	Clusters []ClusterState `json:"clusters"`
}

// ClusterState is one cluster's record.
type ClusterState struct {
	Name        string `json:"name"`
	ServiceCIDR string `json:"serviceCIDR"`
	// Server is the API server's URL.
	Server    string    `json:"server"`
	Ports     Ports     `json:"ports"`
	Processes []Process `json:"processes"`
}

// Process is one started process.
type Process struct {
	Component string `json:"component"`
	PID       int    `json:"pid"`
	// StartTime is the process's start time in clock ticks after boot
	// (/proc/PID/stat field 22): a PID reused by another process does not
	// match it.
	StartTime uint64 `json:"startTime"`
	Port      int    `json:"port"`
	Log       string `json:"log"`
}

// Running reports whether p is still the process Up started (and not a
// zombie).
func (p Process) Running() bool {
	st, err := readStat(p.PID)
	return err == nil && st.start == p.StartTime && st.state != 'Z' && st.state != 'X'
}

func (s *State) cluster(name string) *ClusterState {
	for i := range s.Clusters {
		if s.Clusters[i].Name == name {
			return &s.Clusters[i]
		}
	}
	s.Clusters = append(s.Clusters, ClusterState{Name: name})
	return &s.Clusters[len(s.Clusters)-1]
}

// processes are every recorded process, in start order.
func (s *State) processes() []Process {
	var out []Process
	for _, c := range s.Clusters {
		out = append(out, c.Processes...)
	}
	return out
}

// LoadState reads stateDir's lab.json; (nil, nil) when there is none.
func LoadState(stateDir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(stateDir, stateFile), err)
	}
	return &s, nil
}

// save writes lab.json atomically.
func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.StateDir, stateFile), append(b, '\n'), 0o644)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// runtimeEntries are what the lab writes in the state directory; Down
// removes exactly these.
func runtimeEntries() []string {
	out := []string{stateFile, stateFile + ".tmp", kubeconfigFile, kubeconfigFile + ".tmp", demoDir}
	for _, c := range Clusters {
		out = append(out, c.Name)
	}
	return out
}

// removeRuntime removes the lab's files from stateDir, then stateDir itself
// when nothing else is left in it.
func removeRuntime(stateDir string) error {
	var errs []error
	for _, e := range runtimeEntries() {
		if err := os.RemoveAll(filepath.Join(stateDir, e)); err != nil {
			errs = append(errs, err)
		}
	}
	if ents, err := os.ReadDir(stateDir); err == nil && len(ents) == 0 {
		_ = os.Remove(stateDir)
	}
	return errors.Join(errs...)
}

// hasRuntime reports whether stateDir holds anything the lab writes.
func hasRuntime(stateDir string) bool {
	for _, e := range runtimeEntries() {
		if _, err := os.Lstat(filepath.Join(stateDir, e)); err == nil {
			return true
		}
	}
	return false
}

// procStat is what the lab reads from /proc/PID/stat.
type procStat struct {
	state byte
	start uint64
}

func readStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, fmt.Errorf("bad pid %d", pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat parses /proc/PID/stat: "pid (comm) state ppid ...", comm may
// hold spaces and parentheses, so fields count from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return procStat{state: f[0][0], start: start}, nil
}

// cmdline is a process's argv (nil once it has exited or is a zombie).
func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// FindProcesses lists the PIDs (but this process's) of live processes whose
// command line names a file in stateDir and, unless anyProgram, whose
// program is one of the lab's Components: what a lab in stateDir may have
// left running even when lab.json is lost.
func FindProcesses(stateDir string, anyProgram bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	needle := filepath.Clean(stateDir) + string(filepath.Separator)
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if matchesLab(cmdline(pid), needle, anyProgram) {
			if st, err := readStat(pid); err == nil && st.state != 'Z' && st.state != 'X' {
				out = append(out, pid)
			}
		}
	}
	return out
}

func matchesLab(argv []string, needle string, anyProgram bool) bool {
	if len(argv) == 0 {
		return false
	}
	isNode := len(argv) > 3 && argv[1] == "lab" && argv[2] == "node"
	if !anyProgram && !isNode && !slices.Contains(Components, filepath.Base(argv[0])) {
		return false
	}
	for _, a := range argv {
		// A lab node names the state directory itself (--state-dir S).
		if strings.Contains(a, needle) || (isNode && a == strings.TrimSuffix(needle, string(filepath.Separator))) {
			return true
		}
	}
	return false
}
