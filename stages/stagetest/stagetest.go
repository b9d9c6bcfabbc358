// Package stagetest holds helpers for testing stages, as net/http/httptest
// does for handlers. Only tests import it.
package stagetest

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
)

// Collect runs in and returns every element it sent, and its error. The
// bodies are closed when the test ends.
func Collect(t testing.TB, in stages.Input) ([]elements.Element, error) {
	t.Helper()
	ch := make(chan elements.Element)
	errc := make(chan error, 1)
	go func() {
		errc <- in.Run(context.Background(), ch)
		close(ch)
	}()
	var els []elements.Element
	for el := range ch {
		els = append(els, el)
	}
	t.Cleanup(func() {
		for i := range els {
			els[i].Close()
		}
	})
	return els, <-errc
}

// LockedBuffer is a bytes.Buffer that one goroutine may write while
// another reads it (a log sink under test).
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
