package regserver_test

import (
	"context"
	"encoding/pem"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/occystrap/occystrap/stages/regserver"
	"github.com/occystrap/occystrap/testdata/peers"
)

// conformanceModule is the OCI distribution-spec conformance suite, a main
// program. It is built by the test (not required by go.mod, which must not
// depend on it).
const conformanceModule = "github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"

// buildConformance installs the conformance program into a temporary
// directory and returns its path. When it cannot be built (no network, no
// module cache) the test is skipped, or fails if peers are required.
func buildConformance(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", conformanceModule)
	// Outside this module, so that its go.mod plays no part.
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		msg := "cannot build the OCI conformance suite: " + err.Error() + "\n" + string(out)
		if peers.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return filepath.Join(bin, "conformance")
}

// junitReport is the part of the suite's junit.xml the test reads.
type junitReport struct {
	Suites []struct {
		Cases []struct {
			Name      string `xml:"name,attr"`
			Status    string `xml:"status,attr"`
			SystemOut string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestConformance runs the OCI distribution-spec conformance suite against
// a TLS server, for push and for pulls of what was pushed.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("the conformance suite is not short")
	}
	prog := buildConformance(t)
	srv, err := regserver.Start(regserver.Options{TLS: true, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	work := t.TempDir()
	// OCI_TLS=insecure is only a label in this version of the suite: its
	// client still verifies certificates. Go reads extra roots from
	// SSL_CERT_FILE, so hand it the server's self-signed certificate.
	caFile := filepath.Join(work, "ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(work, "results")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog)
	cmd.Dir = work
	cmd.Env = append(os.Environ(),
		"OCI_CONFIGURATION="+filepath.Join(work, "none.yaml"),
		"OCI_REGISTRY="+srv.Addr(),
		"OCI_TLS=insecure", // the server's certificate is self-signed
		"SSL_CERT_FILE="+caFile,
		"SSL_CERT_DIR="+work,
		"OCI_RESULTS_DIR="+results,
		"OCI_LOG=error",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_API_PULL=true",
		"OCI_API_PUSH=true",
		// The server deliberately deletes nothing: blobs, manifests and
		// tags live until Close, and DELETE answers 405 UNSUPPORTED.
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		// Nor does it index referrers (GET /v2/<name>/referrers/<digest>),
		// which occystrap has no use for.
		"OCI_API_REFERRER=false",
		// Cancelling an upload (DELETE of a session) is supported.
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		// Every push answer carries Docker-Content-Digest; hold the server
		// to it.
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		// The server does not check that a manifest's descriptors were
		// pushed, so manifests naming absent blobs are accepted.
		"OCI_DATA_SPARSE=true",
		// PUT of a manifest by digest with ?tag= parameters (a 1.2 draft
		// feature, off by default for 1.1) is not implemented: the tags
		// are not made, and the suite's fallback, a push by tag, cannot
		// keep a sha512 digest.
		"OCI_API_MANIFESTS_TAG_PARAM=false",
	)
	// The configuration file named above does not exist; make it empty so
	// that only the environment counts.
	if err := os.WriteFile(filepath.Join(work, "none.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the conformance suite did not finish: %v\n%s", ctx.Err(), out)
	}
	// The program's exit status says nothing useful; the report does.
	raw, rerr := os.ReadFile(filepath.Join(results, "junit.xml"))
	if rerr != nil {
		t.Fatalf("the conformance suite wrote no report (%v, %v):\n%s", err, rerr, out)
	}
	var rep junitReport
	if err := xml.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("junit.xml: %v", err)
	}
	counts := map[string]int{}
	var failed []string
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			counts[c.Status]++
			if c.Status == "failure" || c.Status == "error" {
				failed = append(failed, c.Name+": "+strings.TrimSpace(c.SystemOut))
			}
		}
	}
	t.Logf("conformance: %v", counts)
	if i := strings.Index(string(out), "OCI Conformance Result"); i >= 0 {
		t.Logf("%s", out[i:])
	}
	if counts["passed"] == 0 {
		t.Errorf("no conformance test passed:\n%s", out)
	}
	if len(failed) > 0 {
		t.Errorf("%d conformance tests failed:\n%s\n\nreport:\n%s", len(failed), strings.Join(failed, "\n"), out)
	}
}
