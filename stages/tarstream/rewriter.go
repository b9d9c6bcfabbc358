// Package tarstream rewrites tar archives entry by entry without decoding
// and re-encoding them: each entry's raw header blocks (its main header and
// the PAX 'x' extended headers and GNU 'L'/'K' long name and long link
// entries before it) are read and parsed, a filter may change some fields
// in place (SetModTime) or drop the whole entry, and the data blocks are
// copied through unchanged. Whatever a filter does not touch survives byte
// for byte: PAX records (xattrs such as security.capability, SELinux
// labels, ACLs), long names, hard links, sparse files, devices, owners,
// unusual field encodings and padding. A pass that keeps every entry
// unchanged reproduces its input exactly, including the end-of-archive
// blocks, the record padding after them and anything else that follows.
//
// Entries are interpreted as Go's archive/tar interprets them (which is what
// Docker, containerd and stages/unpack see), in particular for how many
// data bytes follow a header, so that a filter and the consumers after it
// agree on where entries start. Where this package differs, it says so.
//
// The package also has the glob matchers of the exclude and search
// filters: CompileGlob and CompileFnmatch.
package tarstream

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits on hostile input. Extended headers are held in memory until the
// entry is kept or dropped; data never is.
const (
	// MaxExtendedHeader is the largest PAX extended header or GNU long
	// name/link accepted (its data, not counting the header block); the
	// same limit as archive/tar.
	MaxExtendedHeader = 1 << 20
	// maxEntryHeaders bounds all the header bytes of one entry (several
	// extended headers in a row).
	maxEntryHeaders = 4 << 20
	// maxSparseExtensions bounds the extension blocks of an old GNU sparse
	// header (1 MiB of sparse map, as archive/tar).
	maxSparseExtensions = MaxExtendedHeader / blockSize
)

type rwState int

const (
	stIdle    rwState = iota // no current entry
	stPending                // an entry has been read; nothing of it written
	stWriting                // its headers are written (Data was read); data in progress
	stEnd                    // end of the archive reached: Next returns io.EOF
	stClosed
)

// segment is one header of the current entry: an extended header with its
// data, or the main header.
type segment struct {
	typ   byte
	off   int64 // input offset of the header block
	start int   // the header block is raw[start:start+blockSize]
	end   int   // raw[start:end] is the segment as read: header, data, padding
	size  int   // extended data length (0 for the main header)
	recs  []paxRec

	rewritten bool   // data replaced by SetModTime: write header, data, zero padding
	data      []byte // the replacement data
}

// Rewriter streams a tar archive from a reader to a writer entry by entry.
// Call Next for each entry, then Keep, Drop or (optionally) read Data, and
// Close at the end. An entry neither kept nor dropped when Next or Close is
// called is kept. A Rewriter is not safe for concurrent use.
//
// The output is buffered: only Close guarantees that everything has been
// written to the destination.
type Rewriter struct {
	in  input
	out output

	state   rwState
	err     error // sticky
	changed bool
	gen     uint64 // counts entries, to tell stale Entry and Data values

	raw       []byte    // the current entry's header segments as read
	segs      []segment // its headers in input order, the main header last
	dirty     bool      // some segment was modified
	dataLeft  int64     // data bytes of the current entry not yet passed
	padLeft   int64     // then padding bytes
	sparseExt bool      // old GNU sparse extension blocks follow the main header
	curName   string    // for error messages
	curOff    int64

	scratch    []byte // for rewriting extended header data
	scratchRec []paxRec
}

// NewRewriter returns a Rewriter that reads the archive from r and writes
// the result to w.
func NewRewriter(r io.Reader, w io.Writer) *Rewriter {
	return &Rewriter{
		in:  input{r: r, buf: make([]byte, inBufSize)},
		out: output{w: w, buf: make([]byte, 0, outBufSize)},
	}
}

// Entry is one archive member as read by Next: the effective values of its
// header fields after the extended headers before it are applied. Changing
// the fields has no effect on the output; use the methods.
//
// PAX global headers ('g') are returned as entries of their own, with
// Typeflag 'g', Name the header's name and PAX their records. Their records
// are not applied to the fields of the entries after them, as archive/tar
// does not apply them; GNU tar and Python's tarfile do (a global "mtime"
// record overrides the time of every later entry without its own), which
// is why SetModTime rewrites global headers too. A filter should keep
// them (exclude patterns must not remove them by accident) and
// normalize-timestamps should call SetModTime on them as on any entry.
type Entry struct {
	// Name is the effective path, exactly as stored (no cleaning): the PAX
	// "path" record, else a GNU long name, else the ustar prefix and name;
	// the GNU.sparse.name record of a PAX sparse file wins over all. Note
	// that archive/tar gives a GNU long name precedence over a PAX path
	// when an entry has both, which no known writer produces.
	Name string
	// Linkname is the effective link target: the PAX "linkpath" record,
	// else a GNU long link name, else the header's linkname.
	Linkname string
	// Typeflag is the entry type. As in archive/tar, the old '\x00' type is
	// reported as '0', or '5' when Name ends in '/'; the header itself is
	// left as it is.
	Typeflag byte
	// Size is the size of the file, as archive/tar reports it: the PAX
	// "size" record or the header's size field, except for sparse files,
	// whose Size is their expanded size. Hard links, symbolic links,
	// devices, directories and fifos keep whatever their header says but
	// have no data.
	Size int64
	// DataSize is the number of data bytes stored after the headers (the
	// padding to a whole block not counted), which Keep copies and Drop
	// skips: 0 for header-only types, the stored (packed) data of sparse
	// files, including the sparse map of PAX sparse format 1.0. The
	// extension blocks of an old GNU sparse header are not part of it
	// (they are header blocks, copied and dropped with the entry).
	DataSize int64
	// Mode is the header's mode field, file type bits included if the
	// writer set them.
	Mode int64
	// Uid and Gid are the owner ids (PAX "uid"/"gid" records win).
	Uid, Gid int
	// Uname and Gname are the owner names (PAX records win).
	Uname, Gname string
	// ModTime is the modification time (a PAX "mtime" record, with its
	// fraction, wins over the header's whole seconds).
	ModTime time.Time
	// Devmajor and Devminor are the device numbers (0 in V7 headers).
	Devmajor, Devminor int64
	// PAX holds the records of the entry's PAX extended header (the last
	// one if there are several, as archive/tar), or of a global header for
	// a 'g' entry; nil when there is none. It is a read-only view. As in
	// archive/tar, the repeated GNU.sparse.offset/numbytes records of GNU
	// sparse format 0.0 appear joined as GNU.sparse.map.
	PAX map[string]string
	// Offset is the input offset of the entry's first header block (its
	// first extended header, if any).
	Offset int64

	rw  *Rewriter
	gen uint64
}

// Next reads the next entry: its extended headers and main header, not its
// data. The previous entry, if neither kept nor dropped, is kept first. It
// returns io.EOF at the end-of-archive marker, or at the end of the input
// when the archive has no marker; Close then writes what is left.
func (rw *Rewriter) Next() (*Entry, error) {
	if rw.err != nil {
		return nil, rw.err
	}
	switch rw.state {
	case stPending, stWriting:
		if err := rw.Keep(); err != nil {
			return nil, err
		}
	case stEnd, stClosed:
		return nil, io.EOF
	}
	rw.gen++
	e, err := rw.readEntry()
	if err == io.EOF {
		rw.state = stEnd
		return nil, io.EOF
	}
	if err != nil {
		return nil, rw.fail(err)
	}
	rw.state = stPending
	return e, nil
}

// Keep writes the current entry: its headers as possibly modified, then its
// data blocks (and padding) copied unchanged.
func (rw *Rewriter) Keep() error {
	if rw.err != nil {
		return rw.err
	}
	switch rw.state {
	case stPending:
		if err := rw.writeHeaders(); err != nil {
			return rw.fail(err)
		}
	case stWriting:
	default:
		return errors.New("tarstream: Keep without a current entry")
	}
	if err := rw.passData(&rw.out); err != nil {
		return rw.fail(err)
	}
	rw.state = stIdle
	return nil
}

// Drop discards the current entry: its headers, extended headers included,
// and its data. It fails once the entry's data has started to be read
// through Data, since its headers are written by then.
func (rw *Rewriter) Drop() error {
	if rw.err != nil {
		return rw.err
	}
	switch rw.state {
	case stPending:
	case stWriting:
		return errors.New("tarstream: Drop after the entry's data was read")
	default:
		return errors.New("tarstream: Drop without a current entry")
	}
	if rw.sparseExt {
		if err := rw.passSparseExt(nil); err != nil {
			return rw.fail(err)
		}
	}
	if err := rw.passData(nil); err != nil {
		return rw.fail(err)
	}
	rw.changed = true
	rw.state = stIdle
	return nil
}

// Data returns a reader of the current entry's stored data (DataSize
// bytes; the packed data of a sparse file). Reading it commits the entry to
// being kept: its headers are written before the first byte is returned,
// every byte read is written to the output too, and Keep, Next or Close
// copy whatever was not read. Drop is refused once it has been read from.
// The reader returns io.EOF at the end of the data, and an error once the
// Rewriter has moved to another entry.
func (rw *Rewriter) Data() io.Reader {
	return &dataReader{rw: rw, gen: rw.gen}
}

type dataReader struct {
	rw  *Rewriter
	gen uint64
}

func (d *dataReader) Read(p []byte) (int, error) {
	rw := d.rw
	if rw.err != nil {
		return 0, rw.err
	}
	if d.gen != rw.gen || (rw.state != stPending && rw.state != stWriting) {
		return 0, errors.New("tarstream: Data read after the entry was passed")
	}
	if rw.state == stPending {
		if err := rw.writeHeaders(); err != nil {
			return 0, rw.fail(err)
		}
	}
	if rw.dataLeft == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := rw.in.fill(1); err != nil {
		return 0, rw.fail(rw.readError(err, "data"))
	}
	n := min(int64(len(p)), rw.dataLeft, int64(rw.in.buffered()))
	copy(p, rw.in.buf[rw.in.lo:rw.in.lo+int(n)])
	if err := rw.out.write(p[:n]); err != nil {
		return 0, rw.fail(err)
	}
	rw.in.consume(int(n))
	rw.dataLeft -= n
	return int(n), nil
}

// Close finishes the output: it keeps the current entry if it was neither
// kept nor dropped, copies everything left in the input exactly as it is
// (the end-of-archive blocks, record padding and anything after them; any
// entries Next was not called for), and flushes. It returns the first error
// the Rewriter met. It does not close the reader or the writer.
func (rw *Rewriter) Close() error {
	if rw.state == stClosed {
		return rw.err
	}
	if rw.err == nil && (rw.state == stPending || rw.state == stWriting) {
		_ = rw.Keep()
	}
	if rw.err == nil {
		if err := rw.in.copyAll(&rw.out); err != nil {
			rw.fail(rw.readError(err, "the end of the archive"))
		}
	}
	if rw.err == nil {
		if err := rw.out.flush(); err != nil {
			rw.fail(err)
		}
	}
	rw.state = stClosed
	return rw.err
}

// Changed reports whether any entry was dropped or written with modified
// headers so far. SetModTime calls that left every byte as it was do not
// count.
func (rw *Rewriter) Changed() bool { return rw.changed }

func (rw *Rewriter) fail(err error) error {
	if rw.err == nil {
		rw.err = err
	}
	return rw.err
}

// readError describes a read failure while reading what, at the current
// offset: the end of the input is reported as truncation.
func (rw *Rewriter) readError(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		if rw.curName != "" {
			return fmt.Errorf("tarstream: archive truncated in %s of %q (entry at offset %d): %w",
				what, rw.curName, rw.curOff, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("tarstream: archive truncated in %s at offset %d: %w",
			what, rw.in.off, io.ErrUnexpectedEOF)
	}
	var we *writeError
	if errors.As(err, &we) {
		return err
	}
	return fmt.Errorf("tarstream: reading %s at offset %d: %w", what, rw.in.off, err)
}

// headerError describes a malformed header at offset off.
func headerError(off int64, format string, args ...any) error {
	return fmt.Errorf("tarstream: header at offset %d: %s", off, fmt.Sprintf(format, args...))
}

// newSegment appends a segment, reusing the slices of an old one.
func (rw *Rewriter) newSegment() *segment {
	n := len(rw.segs)
	if n < cap(rw.segs) {
		rw.segs = rw.segs[:n+1]
	} else {
		rw.segs = append(rw.segs, segment{})
	}
	s := &rw.segs[n]
	*s = segment{recs: s.recs[:0], data: s.data[:0]}
	return s
}

// readEntry reads the headers of the next entry into raw and segs.
func (rw *Rewriter) readEntry() (*Entry, error) {
	rw.raw = rw.raw[:0]
	rw.segs = rw.segs[:0]
	rw.dirty, rw.sparseExt = false, false
	rw.dataLeft, rw.padLeft = 0, 0
	rw.curName, rw.curOff = "", rw.in.off
	entryOff := rw.in.off
	for {
		off := rw.in.off
		blk, err := rw.in.peek(blockSize)
		if err != nil {
			switch {
			case err == io.EOF && len(blk) == 0 && len(rw.segs) == 0:
				return nil, io.EOF // the archive ends without an end-of-archive marker
			case err == io.EOF && len(blk) == 0:
				return nil, fmt.Errorf("tarstream: archive truncated after the extended header at offset %d: %w",
					rw.segs[len(rw.segs)-1].off, io.ErrUnexpectedEOF)
			case err == io.EOF:
				return nil, fmt.Errorf("tarstream: archive truncated: %d bytes at offset %d are not a whole header block: %w",
					len(blk), off, io.ErrUnexpectedEOF)
			}
			return nil, rw.readError(err, "a header")
		}
		if isZeroBlock(blk) {
			if len(rw.segs) > 0 {
				return nil, headerError(off, "end-of-archive block after the extended header at offset %d",
					rw.segs[len(rw.segs)-1].off)
			}
			return nil, io.EOF // left in the input for Close to copy
		}
		if !validChecksum(blk) {
			return nil, headerError(off, "bad header checksum")
		}
		typ := blk[offTypeflag]
		start := len(rw.raw)
		if len(rw.raw)+blockSize > maxEntryHeaders {
			return nil, headerError(off, "the extended headers of the entry at offset %d exceed %d bytes",
				entryOff, maxEntryHeaders)
		}
		rw.raw = append(rw.raw, blk...)
		rw.in.consume(blockSize)
		s := rw.newSegment()
		s.typ, s.off, s.start, s.end = typ, off, start, len(rw.raw)

		switch typ {
		case typeXHeader, typeXGlobal, typeGNULongNm, typeGNULongLnk:
			size, err := parseNumeric(blk[offSize : offSize+lenNum])
			switch {
			case err != nil:
				return nil, headerError(off, "invalid size field")
			case size < 0:
				return nil, headerError(off, "negative size %d", size)
			case size > MaxExtendedHeader:
				return nil, headerError(off, "extended header ('%c') of %d bytes is larger than the %d accepted",
					typ, size, MaxExtendedHeader)
			}
			total := int(size + padding(size))
			if len(rw.raw)+total > maxEntryHeaders {
				return nil, headerError(off, "the extended headers of the entry at offset %d exceed %d bytes",
					entryOff, maxEntryHeaders)
			}
			rw.raw = slices.Grow(rw.raw, total)[:len(rw.raw)+total]
			if _, err := rw.in.readFull(rw.raw[s.end:]); err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return nil, fmt.Errorf("tarstream: archive truncated in the extended header at offset %d: %w",
						off, io.ErrUnexpectedEOF)
				}
				return nil, rw.readError(err, "an extended header")
			}
			s.end = len(rw.raw)
			s.size = int(size)
			if typ == typeXHeader || typ == typeXGlobal {
				data := rw.raw[s.start+blockSize : s.start+blockSize+s.size]
				if s.recs, err = parsePAXRecords(data, s.recs); err != nil {
					return nil, headerError(off, "%v", err)
				}
			}
			if typ == typeXGlobal {
				return rw.globalEntry(entryOff)
			}
		default:
			return rw.fileEntry(entryOff)
		}
	}
}

// segData returns the extended data of segment s as it stands.
func (rw *Rewriter) segData(s *segment) []byte {
	if s.rewritten {
		return s.data
	}
	return rw.raw[s.start+blockSize : s.start+blockSize+s.size]
}

// headerName returns the name in a header block: name, with the ustar or
// star prefix before it.
func headerName(blk []byte, format headerFormat) string {
	name := parseString(blk[offName : offName+lenName])
	var prefix string
	switch format {
	case formatUSTAR:
		prefix = parseString(blk[offPrefix : offPrefix+lenPrefix])
	case formatSTAR:
		prefix = parseString(blk[offPrefix : offPrefix+lenStarPrefix])
	case formatGNU:
		// archive/tar reads files from pre-1.8 Go, which put a prefix
		// where GNU has its times, as ustar when those do not parse.
		if gnuTimesInvalid(blk) {
			if s := parseString(blk[offPrefix : offPrefix+lenPrefix]); isASCII(s) {
				prefix = s
			}
		}
	}
	if prefix != "" {
		return prefix + "/" + name
	}
	return name
}

// gnuTimesInvalid reports whether a GNU header's atime or ctime field is
// set but does not parse.
func gnuTimesInvalid(blk []byte) bool {
	for _, off := range [2]int{offGNUAtime, offGNUCtime} {
		if blk[off] != 0 {
			if _, err := parseNumeric(blk[off : off+lenNum]); err != nil {
				return true
			}
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// globalEntry makes the entry of a PAX global header (the last segment).
func (rw *Rewriter) globalEntry(entryOff int64) (*Entry, error) {
	s := &rw.segs[len(rw.segs)-1]
	blk := rw.raw[s.start : s.start+blockSize]
	e := &Entry{
		Name:     headerName(blk, formatOf(blk)),
		Typeflag: typeXGlobal,
		PAX:      paxMap(rw.segData(s), s.recs),
		Offset:   entryOff,
		rw:       rw,
		gen:      rw.gen,
	}
	if mt, err := parseNumeric(blk[offMtime : offMtime+lenNum]); err == nil {
		e.ModTime = time.Unix(mt, 0)
	}
	rw.curName = e.Name
	return e, nil
}

// fileEntry makes the entry whose main header is the last segment.
func (rw *Rewriter) fileEntry(entryOff int64) (*Entry, error) {
	m := &rw.segs[len(rw.segs)-1]
	blk := rw.raw[m.start : m.start+blockSize]
	off := m.off
	format := formatOf(blk)
	e := &Entry{Offset: entryOff, rw: rw, gen: rw.gen}

	var longName, longLink string
	for i := range rw.segs[:len(rw.segs)-1] {
		s := &rw.segs[i]
		data := rw.segData(s)
		switch s.typ {
		case typeXHeader:
			e.PAX = paxMap(data, s.recs)
		case typeGNULongNm:
			longName = parseString(data)
		case typeGNULongLnk:
			longLink = parseString(data)
		}
	}

	var bad string // the first numeric field that does not parse
	num := func(field string, b []byte) int64 {
		v, err := parseNumeric(b)
		if err != nil && bad == "" {
			bad = field
		}
		return v
	}
	size := num("size", blk[offSize:offSize+lenNum])
	e.Mode = num("mode", blk[offMode:offMode+lenID])
	e.Uid = int(num("uid", blk[offUID:offUID+lenID]))
	e.Gid = int(num("gid", blk[offGID:offGID+lenID]))
	mtime := num("mtime", blk[offMtime:offMtime+lenNum])
	if format != formatV7 {
		e.Devmajor = num("devmajor", blk[offDevmajor:offDevmajor+lenID])
		e.Devminor = num("devminor", blk[offDevminor:offDevminor+lenID])
		e.Uname = parseString(blk[offUname : offUname+lenOwnerName])
		e.Gname = parseString(blk[offGname : offGname+lenOwnerName])
	}
	if bad != "" {
		return nil, headerError(off, "invalid %s field", bad)
	}
	e.ModTime = time.Unix(mtime, 0)

	e.Name = headerName(blk, format)
	e.Linkname = parseString(blk[offLinkname : offLinkname+lenLinkname])
	if longName != "" {
		e.Name = longName
	}
	if longLink != "" {
		e.Linkname = longLink
	}
	for k, v := range e.PAX {
		if v == "" {
			continue // an empty record keeps the header's value
		}
		var err error
		switch k {
		case paxPath:
			e.Name = v
		case paxLinkpath:
			e.Linkname = v
		case paxUname:
			e.Uname = v
		case paxGname:
			e.Gname = v
		case paxUID:
			var id int64
			id, err = strconv.ParseInt(v, 10, 64)
			e.Uid = int(id)
		case paxGID:
			var id int64
			id, err = strconv.ParseInt(v, 10, 64)
			e.Gid = int(id)
		case paxMtime:
			e.ModTime, err = parsePAXTime(v)
		case paxSize:
			size, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return nil, headerError(off, "invalid PAX %s record %q", k, v)
		}
	}

	typ := blk[offTypeflag]
	if typ == typeRegA {
		typ = typeReg
		if strings.HasSuffix(e.Name, "/") {
			typ = typeDir
		}
	}
	e.Typeflag = typ
	if size < 0 {
		return nil, headerError(off, "negative size %d", size)
	}
	if size > math.MaxInt64-blockSize {
		return nil, headerError(off, "size %d too large", size)
	}
	e.Size = size
	if !isHeaderOnly(typ) {
		e.DataSize = size
	}

	// Sparse files: their Size is the expanded size; their stored data is
	// what the size field (or PAX size record) says, copied as it is.
	if typ == typeGNUSparse {
		if format != formatGNU {
			return nil, headerError(off, "old GNU sparse entry in a non-GNU header")
		}
		real, err := parseNumeric(blk[offGNURealSize : offGNURealSize+lenNum])
		if err != nil {
			return nil, headerError(off, "invalid GNU sparse real size")
		}
		e.Size = real
		rw.sparseExt = blk[offGNUIsExt] != 0
	} else if isPAXSparse(e.PAX) {
		if name := e.PAX[paxGNUSparseName]; name != "" {
			e.Name = name
		}
		v := e.PAX[paxGNUSparseSize]
		if v == "" {
			v = e.PAX[paxGNUSparseRealSize]
		}
		if v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, headerError(off, "invalid GNU sparse size %q", v)
			}
			e.Size = n
		}
	}

	rw.dataLeft = e.DataSize
	rw.padLeft = padding(e.DataSize)
	rw.curName = e.Name
	return e, nil
}

// isPAXSparse reports whether PAX records describe a GNU sparse file, with
// archive/tar's rules.
func isPAXSparse(pax map[string]string) bool {
	major, minor := pax[paxGNUSparseMajor], pax[paxGNUSparseMinor]
	switch {
	case major == "0" && (minor == "0" || minor == "1"), major == "1" && minor == "0":
		return true
	case major != "" || minor != "":
		return false
	}
	return pax[paxGNUSparseMap] != ""
}

// writeHeaders writes the current entry's headers, and the extension
// blocks of an old GNU sparse header, which follow it.
func (rw *Rewriter) writeHeaders() error {
	if !rw.dirty {
		if err := rw.out.write(rw.raw); err != nil {
			return err
		}
	} else {
		rw.changed = true
		for i := range rw.segs {
			s := &rw.segs[i]
			if !s.rewritten {
				if err := rw.out.write(rw.raw[s.start:s.end]); err != nil {
					return err
				}
				continue
			}
			if err := rw.out.write(rw.raw[s.start : s.start+blockSize]); err != nil {
				return err
			}
			if err := rw.out.write(s.data); err != nil {
				return err
			}
			if err := rw.out.zeros(int(padding(int64(len(s.data))))); err != nil {
				return err
			}
		}
	}
	rw.state = stWriting
	if rw.sparseExt {
		return rw.passSparseExt(&rw.out)
	}
	return nil
}

// passSparseExt passes the extension blocks of an old GNU sparse header to
// out (nil: discards them).
func (rw *Rewriter) passSparseExt(out *output) error {
	for n := 0; ; n++ {
		if n >= maxSparseExtensions {
			return fmt.Errorf("tarstream: entry %q at offset %d: more than %d GNU sparse extension blocks",
				rw.curName, rw.curOff, maxSparseExtensions)
		}
		blk, err := rw.in.peek(blockSize)
		if err != nil {
			return rw.readError(err, "the sparse map")
		}
		more := blk[offExtIsExt] != 0
		if out != nil {
			if err := out.write(blk); err != nil {
				return err
			}
		}
		rw.in.consume(blockSize)
		if !more {
			rw.sparseExt = false
			return nil
		}
	}
}

// passData passes the rest of the current entry's data and padding to out
// (nil: discards them). Missing padding at the very end of the input is
// tolerated, as archive/tar does.
func (rw *Rewriter) passData(out *output) error {
	if rw.dataLeft > 0 {
		n, err := rw.in.copyN(out, rw.dataLeft)
		rw.dataLeft -= n
		if err != nil {
			return rw.readError(err, "the data")
		}
	}
	if rw.padLeft > 0 {
		n, err := rw.in.copyN(out, rw.padLeft)
		rw.padLeft -= n
		if err != nil && err != io.ErrUnexpectedEOF {
			return rw.readError(err, "the padding")
		}
		rw.padLeft = 0
	}
	return nil
}

// SetModTime sets the entry's modification time to ts (whole seconds since
// the epoch) everywhere a time is recorded for it, so that no old time is
// left anywhere:
//
//   - the mtime field of every header block of the entry (its main header
//     and each extended header's own header block), in octal, or base-256
//     when ts does not fit in 11 octal digits;
//   - the atime and ctime fields of GNU and star headers, when set;
//   - in PAX extended headers (and a global header, for a 'g' entry), each
//     "mtime" record is rewritten as ts (its length prefix recomputed, the
//     extended header's size field, blocks and checksum with it), and the
//     "atime", "ctime" and "LIBARCHIVE.creationtime" records are removed.
//     No "mtime" record is added where there was none: the header field
//     then carries the time.
//
// Checksums of modified blocks are recomputed; fields that already hold
// the value are left as they are, so normalising an archive twice changes
// nothing the second time. SetModTime must be called before Keep (or Data);
// called later it makes the Rewriter fail.
func (e *Entry) SetModTime(ts int64) {
	rw := e.rw
	if rw == nil {
		return
	}
	if e.gen != rw.gen || rw.state != stPending {
		rw.fail(fmt.Errorf("tarstream: SetModTime on %q after it was written", e.Name))
		return
	}
	for i := range rw.segs {
		s := &rw.segs[i]
		hdr := rw.raw[s.start : s.start+blockSize]
		changed := setNumeric(hdr[offMtime:offMtime+lenNum], ts)
		var times [2]int
		switch formatOf(hdr) {
		case formatGNU:
			if !gnuTimesInvalid(hdr) {
				times = [2]int{offGNUAtime, offGNUCtime}
			}
		case formatSTAR:
			times = [2]int{offStarAtime, offStarCtime}
		}
		for _, off := range times {
			if off != 0 && hdr[off] != 0 {
				if setNumeric(hdr[off:off+lenNum], ts) {
					changed = true
				}
			}
		}
		if s.typ == typeXHeader || s.typ == typeXGlobal {
			if rw.rewritePAX(s, ts) {
				changed = true
			}
		}
		if changed {
			setChecksum(hdr)
			rw.dirty = true
		}
	}
	e.ModTime = time.Unix(ts, 0)
	if e.PAX != nil {
		if _, ok := e.PAX[paxMtime]; ok {
			e.PAX[paxMtime] = strconv.FormatInt(ts, 10)
		}
		delete(e.PAX, paxAtime)
		delete(e.PAX, paxCtime)
		delete(e.PAX, paxCreationTime)
	}
}

// rewritePAX rewrites the records of extended header s for SetModTime and
// reports whether its data changed; if so, its size field is updated.
func (rw *Rewriter) rewritePAX(s *segment, ts int64) bool {
	old := rw.segData(s)
	buf := rw.scratch[:0]
	recs := rw.scratchRec[:0]
	changed := false
	tail := 0
	var tsv [20]byte
	value := string(strconv.AppendInt(tsv[:0], ts, 10))
	for _, r := range s.recs {
		tail = r.end
		switch r.key {
		case paxAtime, paxCtime, paxCreationTime:
			changed = true
		case paxMtime:
			st := len(buf)
			buf = appendPAXRecord(buf, paxMtime, value)
			if string(buf[st:]) != string(old[r.start:r.end]) {
				changed = true
			}
			recs = append(recs, paxRec{start: st, end: len(buf), key: r.key})
		default:
			st := len(buf)
			buf = append(buf, old[r.start:r.end]...)
			recs = append(recs, paxRec{start: st, end: len(buf), key: r.key})
		}
	}
	if !changed {
		rw.scratch, rw.scratchRec = buf, recs
		return false
	}
	buf = append(buf, old[tail:]...) // NUL bytes after the last record
	// The new data and records become the segment's; its old buffers
	// become the scratch ones.
	rw.scratch, s.data = s.data[:0], buf
	rw.scratchRec, s.recs = s.recs[:0], recs
	s.rewritten = true
	s.size = len(buf)
	setNumeric(rw.raw[s.start+offSize:s.start+offSize+lenNum], int64(len(buf)))
	return true
}
