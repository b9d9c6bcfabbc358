package cli

import (
	"io"
	"time"

	"github.com/rs/zerolog"
)

// newLogger returns the logger every stage gets: human-readable lines on
// stderr, milestones at info, per-layer detail at debug (--verbose), and
// per-request detail at trace (--debug).
func newLogger(w io.Writer, g *Globals, tty bool) zerolog.Logger {
	level := zerolog.InfoLevel
	switch {
	case g.Debug:
		level = zerolog.TraceLevel
	case g.Verbose:
		level = zerolog.DebugLevel
	}
	cw := zerolog.ConsoleWriter{Out: w, NoColor: !tty, TimeFormat: time.DateTime}
	return zerolog.New(cw).Level(level).With().Timestamp().Logger()
}
