package tarstream

import (
	"bytes"
	"errors"
	"strconv"
)

// blockSize is the size of a tar block: headers are one block, data is
// padded to a whole number of blocks.
const blockSize = 512

// Offsets and lengths of the header fields (POSIX ustar, with the GNU and
// star variants of the area after devminor).
const (
	offName      = 0
	lenName      = 100
	offMode      = 100
	offUID       = 108
	offGID       = 116
	offSize      = 124
	offMtime     = 136
	offChksum    = 148
	offTypeflag  = 156
	offLinkname  = 157
	lenLinkname  = 100
	offMagic     = 257
	offVersion   = 263
	offUname     = 265
	offGname     = 297
	lenOwnerName = 32
	offDevmajor  = 329
	offDevminor  = 337
	lenID        = 8  // mode, uid, gid, devmajor, devminor
	lenNum       = 12 // size, mtime and the GNU/star times

	offPrefix = 345 // ustar
	lenPrefix = 155

	offGNUAtime    = 345 // GNU
	offGNUCtime    = 357
	offGNUIsExt    = 482
	offGNURealSize = 483
	offExtIsExt    = 504 // in a GNU sparse extension block

	lenStarPrefix  = 131 // star
	offStarAtime   = 476
	offStarCtime   = 488
	offStarTrailer = 508
)

// headerFormat is the layout of a header block, told by its magic.
type headerFormat int

const (
	formatV7    headerFormat = iota // no magic: no owner names, devices or prefix
	formatUSTAR                     // "ustar\x00": POSIX ustar and pax
	formatGNU                       // "ustar  \x00": GNU, times and sparse map after devminor
	formatSTAR                      // ustar magic and "tar\x00" at 508: 131-byte prefix, times
)

// Typeflags of the special entries this package handles itself.
const (
	typeRegA       = '\x00'
	typeReg        = '0'
	typeLink       = '1'
	typeSymlink    = '2'
	typeChar       = '3'
	typeBlock      = '4'
	typeDir        = '5'
	typeFifo       = '6'
	typeXHeader    = 'x'
	typeXGlobal    = 'g'
	typeGNULongNm  = 'L'
	typeGNULongLnk = 'K'
	typeGNUSparse  = 'S'
)

// formatOf tells the layout of a header block whose checksum is valid. It
// follows archive/tar: ustar magic (whatever the version) is ustar or star,
// the GNU magic needs the GNU version too, anything else is V7.
func formatOf(b []byte) headerFormat {
	magic := string(b[offMagic : offMagic+6])
	switch {
	case magic == "ustar\x00" && string(b[offStarTrailer:offStarTrailer+4]) == "tar\x00":
		return formatSTAR
	case magic == "ustar\x00":
		return formatUSTAR
	case magic == "ustar " && string(b[offVersion:offVersion+2]) == " \x00":
		return formatGNU
	default:
		return formatV7
	}
}

// isZeroBlock reports whether b (one block) is all zero bytes.
func isZeroBlock(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checksums returns the unsigned and signed sums of a header block, its
// checksum field counted as spaces (both are accepted, as GNU tar and
// archive/tar do).
func checksums(b []byte) (unsigned, signed int64) {
	for i, c := range b[:blockSize] {
		if i >= offChksum && i < offChksum+8 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return unsigned, signed
}

// validChecksum reports whether the block's checksum field matches.
func validChecksum(b []byte) bool {
	v, err := parseOctal(b[offChksum : offChksum+8])
	if err != nil {
		return false
	}
	u, s := checksums(b)
	return v == u || v == s
}

// setChecksum recomputes the checksum of a modified header block, written
// as GNU tar, archive/tar and Python write it: six octal digits, NUL, space.
func setChecksum(b []byte) {
	u, _ := checksums(b)
	f := b[offChksum : offChksum+8]
	s := strconv.FormatInt(u, 8)
	for i := range 6 {
		f[i] = '0'
	}
	copy(f[6-len(s):6], s)
	f[6] = 0
	f[7] = ' '
}

var errNumeric = errors.New("invalid numeric field")

// parseString returns the bytes of a NUL-terminated field up to the first
// NUL, as stored.
func parseString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parseNumeric parses a numeric header field: octal (possibly padded with
// spaces and NULs), or GNU base-256 when the high bit of the first byte is
// set (two's complement, big-endian). It refuses values that do not fit in
// an int64, as archive/tar does.
func parseNumeric(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var inv byte // 0xff for negative numbers: -a-1 == ^a
		if b[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range b {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 > 0 {
				return 0, errNumeric
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 > 0 {
			return 0, errNumeric
		}
		if inv == 0xff {
			return ^int64(x), nil
		}
		return int64(x), nil
	}
	return parseOctal(b)
}

// parseOctal parses an octal field the way archive/tar does: leading and
// trailing spaces and NULs are ignored, and the digits end at a NUL.
func parseOctal(b []byte) (int64, error) {
	b = bytes.Trim(b, " \x00")
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return 0, nil
	}
	var x uint64
	for _, c := range b {
		if c < '0' || c > '7' || x>>61 != 0 {
			return 0, errNumeric
		}
		x = x<<3 | uint64(c-'0')
	}
	if x>>63 != 0 {
		return 0, errNumeric
	}
	return int64(x), nil
}

// setNumeric stores v in a numeric field unless the field already holds
// v, and reports whether it changed the field. It writes zero-padded octal
// and a NUL when v fits, else base-256 (GNU), which every reader this
// project cares about accepts.
func setNumeric(f []byte, v int64) bool {
	if cur, err := parseNumeric(f); err == nil && cur == v {
		return false
	}
	n := len(f)
	if v >= 0 && v < int64(1)<<(3*(n-1)) {
		s := strconv.FormatInt(v, 8)
		for i := range n - 1 {
			f[i] = '0'
		}
		copy(f[n-1-len(s):n-1], s)
		f[n-1] = 0
		return true
	}
	// Base-256: a 12-byte field holds any int64; an 8-byte one 63 bits.
	x := v
	for i := n - 1; i >= 0; i-- {
		f[i] = byte(x)
		x >>= 8
	}
	f[0] |= 0x80
	return true
}

// isHeaderOnly reports whether entries of this (normalised) type have no
// data whatever their size field says. This is archive/tar's rule, which is
// what Docker, containerd and stages/unpack follow.
func isHeaderOnly(t byte) bool {
	switch t {
	case typeLink, typeSymlink, typeChar, typeBlock, typeDir, typeFifo:
		return true
	}
	return false
}

// padding returns the bytes of padding after n bytes of data.
func padding(n int64) int64 {
	return -n & (blockSize - 1)
}
