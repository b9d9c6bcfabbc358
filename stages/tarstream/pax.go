package tarstream

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// PAX keywords this package reads or rewrites.
const (
	paxPath         = "path"
	paxLinkpath     = "linkpath"
	paxSize         = "size"
	paxUID          = "uid"
	paxGID          = "gid"
	paxUname        = "uname"
	paxGname        = "gname"
	paxMtime        = "mtime"
	paxAtime        = "atime"
	paxCtime        = "ctime"
	paxCreationTime = "LIBARCHIVE.creationtime"

	paxGNUSparseOffset   = "GNU.sparse.offset"
	paxGNUSparseNumBytes = "GNU.sparse.numbytes"
	paxGNUSparseMap      = "GNU.sparse.map"
	paxGNUSparseName     = "GNU.sparse.name"
	paxGNUSparseMajor    = "GNU.sparse.major"
	paxGNUSparseMinor    = "GNU.sparse.minor"
	paxGNUSparseSize     = "GNU.sparse.size"
	paxGNUSparseRealSize = "GNU.sparse.realsize"
)

// paxRec is one record of an extended header: its bytes are
// data[start:end], its key data[start+keyOff:start+keyOff+keyLen].
type paxRec struct {
	start, end int
	key        string
}

var errPAX = errors.New("malformed PAX record")

// parsePAXRecords splits extended header data into records ("%d %s=%s\n",
// the length counting the whole record), appending them to recs. NUL bytes
// after the last record are tolerated (and kept as they are); anything else
// that is not a record is an error.
func parsePAXRecords(data []byte, recs []paxRec) ([]paxRec, error) {
	pos := 0
	for pos < len(data) {
		if data[pos] == 0 {
			for _, c := range data[pos:] {
				if c != 0 {
					return recs, errPAX
				}
			}
			break
		}
		// The length: decimal digits up to a space.
		n, i := 0, pos
		for ; i < len(data) && data[i] >= '0' && data[i] <= '9'; i++ {
			if n > len(data) {
				return recs, errPAX
			}
			n = n*10 + int(data[i]-'0')
		}
		if i == pos || i >= len(data) || data[i] != ' ' || n < 5 || n > len(data)-pos {
			return recs, errPAX
		}
		end := pos + n
		if n <= i-pos+1 || data[end-1] != '\n' {
			return recs, errPAX
		}
		body := data[i+1 : end-1]
		eq := -1
		for j, c := range body {
			if c == '=' {
				eq = j
				break
			}
		}
		if eq <= 0 {
			return recs, errPAX
		}
		key := string(body[:eq])
		if strings.IndexByte(key, 0) >= 0 {
			return recs, errPAX
		}
		recs = append(recs, paxRec{start: pos, end: end, key: key})
		pos = end
	}
	return recs, nil
}

// paxValue returns the value of record r in data.
func paxValue(data []byte, r paxRec) string {
	i := r.start
	for data[i] != ' ' {
		i++
	}
	return string(data[i+1+len(r.key)+1 : r.end-1])
}

// paxMap builds the map view of the records, later records winning. As
// archive/tar does, the repeated GNU.sparse.offset/numbytes records of GNU
// sparse format 0.0 are joined into one GNU.sparse.map record.
func paxMap(data []byte, recs []paxRec) map[string]string {
	m := make(map[string]string, len(recs))
	var sparse []string
	for _, r := range recs {
		v := paxValue(data, r)
		switch r.key {
		case paxGNUSparseOffset, paxGNUSparseNumBytes:
			sparse = append(sparse, v)
		default:
			m[r.key] = v
		}
	}
	if len(sparse) > 0 {
		m[paxGNUSparseMap] = strings.Join(sparse, ",")
	}
	return m
}

// appendPAXRecord appends the record "%d key=value\n" to b, its length
// counting its own digits.
func appendPAXRecord(b []byte, key, value string) []byte {
	rest := len(key) + len(value) + 3 // ' ', '=' and '\n'
	size := rest + len(strconv.Itoa(rest))
	if n := len(strconv.Itoa(size)); n+rest != size {
		size = n + rest // adding the digits carried the length to one more digit
	}
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	b = append(b, value...)
	return append(b, '\n')
}

// parsePAXTime parses a PAX time value: decimal seconds, optionally
// negative, with an optional fraction (nanoseconds kept, beyond truncated).
func parsePAXTime(s string) (time.Time, error) {
	ss, sn, _ := strings.Cut(s, ".")
	secs, err := strconv.ParseInt(ss, 10, 64)
	if err != nil {
		return time.Time{}, errPAX
	}
	if sn == "" {
		return time.Unix(secs, 0), nil
	}
	if strings.Trim(sn, "0123456789") != "" {
		return time.Time{}, errPAX
	}
	if len(sn) < 9 {
		sn += strings.Repeat("0", 9-len(sn))
	}
	nsecs, _ := strconv.ParseInt(sn[:9], 10, 64)
	if len(ss) > 0 && ss[0] == '-' {
		return time.Unix(secs, -nsecs), nil
	}
	return time.Unix(secs, nsecs), nil
}
