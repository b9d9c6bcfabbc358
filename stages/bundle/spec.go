package bundle

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The runtime-spec types this package writes: the subset of
// github.com/opencontainers/runtime-spec/specs-go that `runc spec` fills.

type spec struct {
	OCIVersion  string            `json:"ociVersion"`
	Process     process           `json:"process"`
	Root        root              `json:"root"`
	Hostname    string            `json:"hostname"`
	Mounts      []mount           `json:"mounts"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       linux             `json:"linux"`
}

type process struct {
	Terminal        bool         `json:"terminal"`
	User            user         `json:"user"`
	Args            []string     `json:"args"`
	Env             []string     `json:"env"`
	Cwd             string       `json:"cwd"`
	Capabilities    capabilities `json:"capabilities"`
	Rlimits         []rlimit     `json:"rlimits"`
	NoNewPrivileges bool         `json:"noNewPrivileges"`
}

type user struct {
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGids []uint32 `json:"additionalGids,omitempty"`
}

type capabilities struct {
	Bounding  []string `json:"bounding"`
	Effective []string `json:"effective"`
	Permitted []string `json:"permitted"`
	Ambient   []string `json:"ambient"`
}

type rlimit struct {
	Type string `json:"type"`
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

type root struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
}

type mount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type linux struct {
	Resources     resources   `json:"resources"`
	Namespaces    []namespace `json:"namespaces"`
	MaskedPaths   []string    `json:"maskedPaths"`
	ReadonlyPaths []string    `json:"readonlyPaths"`
}

type resources struct {
	Devices []device `json:"devices"`
}

type device struct {
	Allow  bool   `json:"allow"`
	Access string `json:"access"`
}

type namespace struct {
	Type string `json:"type"`
}

// defaultPath is the PATH runc spec sets, used when the image sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultSpec returns what `runc spec` writes (runc 1.1), with the
// original's hostname and no terminal.
func defaultSpec() spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return spec{
		OCIVersion: "1.0.2-dev",
		Process: process{
			Terminal: false,
			Args:     []string{},
			Env:      []string{defaultPath, "TERM=xterm"},
			Cwd:      "/",
			Capabilities: capabilities{
				Bounding: caps, Effective: caps, Permitted: caps, Ambient: caps,
			},
			Rlimits:         []rlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     root{Path: "rootfs", Readonly: true},
		Hostname: "occystrap",
		Mounts: []mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: linux{
			Resources:  resources{Devices: []device{{Allow: false, Access: "rwm"}}},
			Namespaces: []namespace{{"pid"}, {"network"}, {"ipc"}, {"uts"}, {"mount"}},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// buildSpec converts an image config into a runtime config following the
// image-spec's conversion rules (conversion.md). rootfs opens files of the
// unpacked root filesystem, confined to it, to resolve user and group
// names.
func buildSpec(img ocispec.Image, open func(name string) (io.ReadCloser, error)) (spec, error) {
	s := defaultSpec()
	c := img.Config
	s.Process.Args = append(append([]string{}, c.Entrypoint...), c.Cmd...)
	if c.WorkingDir != "" {
		s.Process.Cwd = c.WorkingDir
	}
	if len(c.Env) > 0 {
		env := slices.Clone(c.Env)
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
			env = append([]string{defaultPath}, env...)
		}
		s.Process.Env = env
	}
	u, err := resolveUser(c.User, open)
	if err != nil {
		return s, err
	}
	s.Process.User = u

	ann := map[string]string{}
	for k, v := range c.Labels {
		ann[k] = v
	}
	set := func(k, v string) {
		if v != "" {
			ann[k] = v
		}
	}
	set("org.opencontainers.image.os", img.OS)
	set("org.opencontainers.image.architecture", img.Architecture)
	set("org.opencontainers.image.variant", img.Variant)
	set("org.opencontainers.image.os.version", img.OSVersion)
	if len(img.OSFeatures) > 0 {
		set("org.opencontainers.image.os.features", strings.Join(img.OSFeatures, ","))
	}
	set("org.opencontainers.image.author", img.Author)
	if img.Created != nil {
		set("org.opencontainers.image.created", img.Created.UTC().Format("2006-01-02T15:04:05Z07:00"))
	}
	set("org.opencontainers.image.stopSignal", c.StopSignal)
	if len(c.ExposedPorts) > 0 {
		var ports []string
		for p := range c.ExposedPorts {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		set("org.opencontainers.image.exposedPorts", strings.Join(ports, ","))
	}
	if len(ann) > 0 {
		s.Annotations = ann
	}
	return s, nil
}

// resolveUser turns the config's User (user, uid, user:group, uid:gid,
// user:gid, uid:group) into ids, resolving names through the root
// filesystem's /etc/passwd and /etc/group.
func resolveUser(spec string, open func(string) (io.ReadCloser, error)) (user, error) {
	var u user
	if spec == "" {
		return u, nil
	}
	name, group, hasGroup := strings.Cut(spec, ":")
	passwd, _ := readDB(open, "etc/passwd")
	groups, _ := readDB(open, "etc/group")

	var pw []string // the passwd entry found, if any
	if id, err := strconv.ParseUint(name, 10, 32); err == nil {
		u.UID = uint32(id)
		for _, e := range passwd {
			if len(e) > 3 && e[2] == name {
				pw = e
				break
			}
		}
	} else {
		for _, e := range passwd {
			if len(e) > 3 && e[0] == name {
				pw = e
				break
			}
		}
		if pw == nil {
			return u, fmt.Errorf("image user %q: no such user in the image's /etc/passwd", name)
		}
		id, err := strconv.ParseUint(pw[2], 10, 32)
		if err != nil {
			return u, fmt.Errorf("image user %q: bad uid %q in /etc/passwd", name, pw[2])
		}
		u.UID = uint32(id)
	}
	switch {
	case hasGroup:
		if id, err := strconv.ParseUint(group, 10, 32); err == nil {
			u.GID = uint32(id)
			break
		}
		found := false
		for _, e := range groups {
			if len(e) > 2 && e[0] == group {
				id, err := strconv.ParseUint(e[2], 10, 32)
				if err != nil {
					return u, fmt.Errorf("image group %q: bad gid %q in /etc/group", group, e[2])
				}
				u.GID, found = uint32(id), true
				break
			}
		}
		if !found {
			return u, fmt.Errorf("image group %q: no such group in the image's /etc/group", group)
		}
	case pw != nil:
		if id, err := strconv.ParseUint(pw[3], 10, 32); err == nil {
			u.GID = uint32(id)
		}
	}
	if !hasGroup && pw != nil {
		// Supplementary groups: the groups listing the user as a member.
		for _, e := range groups {
			if len(e) < 4 {
				continue
			}
			if slices.Contains(strings.Split(e[3], ","), pw[0]) {
				if id, err := strconv.ParseUint(e[2], 10, 32); err == nil && uint32(id) != u.GID && !slices.Contains(u.AdditionalGids, uint32(id)) {
					u.AdditionalGids = append(u.AdditionalGids, uint32(id))
				}
			}
		}
	}
	return u, nil
}

// readDB reads a colon-separated database such as /etc/passwd (at most
// 4 MiB of it).
func readDB(open func(string) (io.ReadCloser, error), name string) ([][]string, error) {
	f, err := open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4<<20))
	if err != nil {
		return nil, err
	}
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, nil
}

// marshalSorted renders v as JSON with sorted keys and four-space indents,
// as the original's json.dumps(indent=4, sort_keys=True).
func marshalSorted(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&generic); err != nil {
		return nil, err
	}
	return json.MarshalIndent(generic, "", "    ")
}
