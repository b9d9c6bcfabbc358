package sidebyside

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize parses a byte count such as "512MiB", "1.5GiB" or "4096",
// with an optional KiB, MiB or GiB suffix.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number with KiB, MiB or GiB", s)
	}
	return int64(f * float64(mult)), nil
}

// MiB formats n bytes as "12.3 MiB".
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
