package registry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestLimitedTransport: with a shared limiter, a request waits for its
// turn, and one whose context ends first is not sent at all.
func TestLimitedTransport(t *testing.T) {
	var sent int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent++ }))
	defer srv.Close()
	lim := rate.NewLimiter(rate.Every(time.Hour), 1) // one request, then none for an hour
	tr := &limitedTransport{base: http.DefaultTransport, lim: lim}
	get := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := get(ctx); err == nil {
		t.Error("a second request went through an exhausted limiter")
	}
	if sent != 1 {
		t.Errorf("the server got %d requests, want 1", sent)
	}
}
