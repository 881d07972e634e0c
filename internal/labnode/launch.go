package labnode

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Mount makes a volume's directory (Source, on this machine) appear at
// Target inside the container.
type Mount struct {
	Source, Target string
	ReadOnly       bool
}

// Launch is how one container process starts: in the pod's network
// namespace, with its own mount namespace (the one `ip netns exec` creates,
// a slave of the host's, so nothing mounted there shows outside), the
// volumes bind-mounted at their mountPaths, as its user.
type Launch struct {
	Netns    string
	Hostname string // set in the process's own UTS namespace
	// Shadows are existing directories (e.g. /run) under which a mountPath
	// does not exist on this machine: each gets a writable overlay (upper
	// layer on a tmpfs at Scratch/N) inside the container's mount
	// namespace, so the mount point can be made without touching the host.
	Shadows []string
	Scratch string
	Mounts  []Mount
	// Files are single files bind-mounted over existing files (e.g. /etc/hosts).
	Files   []Mount
	WorkDir string
	UID     int64
	GID     int64
	Groups  []int64  // supplementary groups (fsGroup, supplementalGroups)
	Caps    []string // capabilities added for a non-root user (ambient)
	Argv    []string
}

// Command is the argv that starts the container: ip netns exec, a shell
// that mounts (every path a positional parameter, never part of the
// script), then setpriv for a non-root user, then the program.
func (l *Launch) Command() []string {
	var script []string
	var params []string
	arg := func(s string) string {
		params = append(params, s)
		return fmt.Sprintf(`"${%d}"`, len(params))
	}
	if l.Hostname != "" {
		script = append(script, "hostname "+arg(l.Hostname))
	}
	for i, dir := range l.Shadows {
		s := arg(fmt.Sprintf("%s/%d", l.Scratch, i))
		d := arg(dir)
		script = append(script,
			fmt.Sprintf("mkdir -p %s && mount -t tmpfs -o mode=0755 lab-scratch %s && mkdir %s/u %s/w", s, s, s, s),
			fmt.Sprintf(`mount -t overlay lab-overlay -o "lowerdir="%s",upperdir="%s"/u,workdir="%s"/w" %s`, d, s, s, d))
	}
	mounts := slices.Clone(l.Mounts)
	// Parents before children.
	slices.SortStableFunc(mounts, func(a, b Mount) int { return strings.Count(a.Target, "/") - strings.Count(b.Target, "/") })
	for _, m := range mounts {
		t := arg(m.Target)
		script = append(script, fmt.Sprintf("mkdir -p %s && mount --bind %s %s", t, arg(m.Source), t))
	}
	for _, f := range l.Files {
		t := arg(f.Target)
		script = append(script, fmt.Sprintf("mount --bind %s %s", arg(f.Source), t))
		if f.ReadOnly {
			script = append(script, "mount -o remount,bind,ro "+t)
		}
	}
	for _, m := range mounts {
		if m.ReadOnly {
			script = append(script, "mount -o remount,bind,ro "+arg(m.Target))
		}
	}
	if l.WorkDir != "" {
		script = append(script, "cd "+arg(l.WorkDir))
	}
	script = append(script, fmt.Sprintf("shift %d", len(params)), `exec "$@"`)
	cmd := []string{"ip", "netns", "exec", l.Netns, "sh", "-ec", strings.Join(script, "\n"), "sh"}
	cmd = append(cmd, params...)
	cmd = append(cmd, privArgs(l.UID, l.GID, l.Groups, l.Caps)...)
	return append(cmd, l.Argv...)
}

// privArgs is the setpriv prefix that makes a process the container's user
// (uid, gid, supplementary groups, ambient capabilities for a non-root
// user); none for root without groups.
func privArgs(uid, gid int64, groups []int64, caps []string) []string {
	if uid == 0 && gid == 0 && len(groups) == 0 {
		return nil
	}
	u, g := strconv.FormatInt(uid, 10), strconv.FormatInt(gid, 10)
	cmd := []string{"setpriv", "--reuid", u, "--regid", g}
	if len(groups) > 0 {
		gs := make([]string, len(groups))
		for i, x := range groups {
			gs[i] = strconv.FormatInt(x, 10)
		}
		cmd = append(cmd, "--groups", strings.Join(gs, ","))
	} else {
		cmd = append(cmd, "--clear-groups")
	}
	if len(caps) > 0 && uid != 0 {
		cs := make([]string, len(caps))
		for i, c := range caps {
			cs[i] = "+" + capName(c)
		}
		all := strings.Join(cs, ",")
		cmd = append(cmd, "--inh-caps", all, "--ambient-caps", all)
	}
	return append(cmd, "--")
}

// Enter is how `kubectl exec` runs a command in a running container: it
// enters the namespaces of the container's main process (nsenter: its
// network, its mount namespace — volumes, /etc/hosts —, its UTS namespace
// and working directory), then becomes the container's user as Launch
// does. The caller gives it the container's environment.
type Enter struct {
	PID    int // the container's main process
	UID    int64
	GID    int64
	Groups []int64
	Caps   []string
	Argv   []string
}

// Command is the argv of the entered command.
func (e *Enter) Command() []string {
	cmd := []string{"nsenter", "--target", strconv.Itoa(e.PID), "--net", "--mount", "--uts", "--wd", "--"}
	cmd = append(cmd, privArgs(e.UID, e.GID, e.Groups, e.Caps)...)
	return append(cmd, e.Argv...)
}

// capName turns NET_ADMIN or CAP_NET_ADMIN into setpriv's net_admin.
func capName(c string) string {
	return strings.ToLower(strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
}

// Shadows returns, for mount targets that do not exist (exists says which
// paths do), the deepest existing ancestor of each — the directories to
// overlay — without duplicates or directories under another one. A target
// under another mount's target needs none (the mount makes it). An error
// when the only existing ancestor is /.
func Shadows(targets []string, exists func(string) bool) ([]string, error) {
	var out []string
	for _, t := range targets {
		t = path.Clean(t)
		if exists(t) || underAny(t, targets) {
			continue
		}
		dir := path.Dir(t)
		for dir != "/" && !exists(dir) {
			dir = path.Dir(dir)
		}
		if dir == "/" {
			return nil, fmt.Errorf("mountPath %s: no parent directory of it exists on this machine (the lab node does not shadow /)", t)
		}
		out = append(out, dir)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	var top []string
	for _, d := range out {
		if !underAny(d, top) {
			top = append(top, d)
		}
	}
	return top, nil
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		d = path.Clean(d)
		if p != d && strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}
