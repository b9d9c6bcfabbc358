package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/occystrap/occystrap/elements"
	"github.com/occystrap/occystrap/stages"
	"github.com/occystrap/occystrap/uri"
	"github.com/opencontainers/go-digest"
	"github.com/rs/zerolog"
)

// Input exports one image from the engine: it inspects the image (config
// digest and diff IDs), then reads its docker-save stream once, streaming
// layers straight through when they come in image order and spooling the
// others (see saveReader).
type Input struct {
	ref      string
	client   *Client
	tempDir  string
	log      zerolog.Logger
	progress stages.Progress
	stats    SaveStats
}

// NewInput returns an Input for the image ref on the engine at socket. It
// does no I/O.
func NewInput(ref uri.Reference, socket string, env stages.Env) *Input {
	p := env.ProgressOrNone()
	return &Input{ref: ref.String(), client: NewClient(socket), tempDir: env.TempDir, log: env.Log, progress: p}
}

// Stats reports how the last Run's layers went through.
func (in *Input) Stats() SaveStats { return in.stats }

// inspect asks the engine about the image and checks what it says.
func (in *Input) inspect(ctx context.Context) (*Inspect, Facts, error) {
	return inspectImage(ctx, in.client, in.ref)
}

// inspectImage asks the engine c about the image ref and checks what it
// says: a diff ID for every layer.
func inspectImage(ctx context.Context, c *Client, ref string) (*Inspect, Facts, error) {
	insp, err := c.Inspect(ctx, ref)
	if err != nil {
		return nil, Facts{}, err
	}
	f := Facts{Reference: ref}
	id := insp.ID
	if !strings.Contains(id, ":") {
		id = "sha256:" + id // Podman's Id has no algorithm
	}
	if d, err := digest.Parse(id); err == nil && d.Algorithm() == digest.SHA256 {
		f.Config = d
	}
	for i, l := range insp.RootFS.Layers {
		d, err := digest.Parse(l)
		if err != nil || d.Algorithm() != digest.SHA256 {
			return nil, Facts{}, fmt.Errorf("the Docker Engine at %s says layer %d of %s has diff ID %q, which is not a sha256 digest", c.socket, i, ref, l)
		}
		f.DiffIDs = append(f.DiffIDs, d)
	}
	return insp, f, nil
}

// Run sends the image, config and layer elements on out.
func (in *Input) Run(ctx context.Context, out chan<- elements.Element) error {
	defer in.client.CloseIdle()
	_, f, err := in.inspect(ctx)
	if err != nil {
		return err
	}
	in.log.Info().Str("image", in.ref).Int("layers", len(f.DiffIDs)).Str("socket", in.client.socket).Msg("exporting from the Docker Engine")
	body, err := in.client.Save(ctx, in.ref)
	if err != nil {
		return err
	}
	defer body.Close()
	tr := in.progress.Track("docker save "+in.ref, -1)
	s := newSaveReader(f, in.tempDir, in.log, out)
	err = s.run(ctx, stages.TrackReader(body, tr))
	tr.Done(err)
	in.stats = s.stats
	if err != nil {
		return err
	}
	in.log.Info().Int("streamed", s.stats.Streamed).Int("spooled", s.stats.Spooled).Int64("spooled_bytes", s.stats.SpooledBytes).
		Msg("read the image from the Docker Engine")
	return nil
}

// Describe returns the image's reference and a config built from the
// engine's inspect, as the original did (spec 6.2 get_config): the
// architecture, OS, variant, creation time, container config and diff IDs
// the engine reports, with an empty history. It does not read the save
// stream: an engine builds the whole export before sending its first byte
// (Docker <= 24 writes it to a temporary directory), so even stopping at
// the config would cost as much as exporting the image.
func (in *Input) Describe(ctx context.Context) (reference string, config []byte, err error) {
	defer in.client.CloseIdle()
	insp, f, err := in.inspect(ctx)
	if err != nil {
		return "", nil, err
	}
	cfg := struct {
		Architecture string          `json:"architecture"`
		OS           string          `json:"os"`
		Variant      string          `json:"variant,omitempty"`
		Created      json.RawMessage `json:"created,omitempty"`
		Config       json.RawMessage `json:"config,omitempty"`
		RootFS       struct {
			Type    string          `json:"type"`
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct{} `json:"history"`
	}{Architecture: insp.Architecture, OS: insp.Os, Variant: insp.Variant, Created: insp.Created, History: []struct{}{}}
	if len(insp.Config) > 0 && string(insp.Config) != "null" {
		cfg.Config = insp.Config
	}
	cfg.RootFS.Type = insp.RootFS.Type
	if cfg.RootFS.Type == "" {
		cfg.RootFS.Type = "layers"
	}
	cfg.RootFS.DiffIDs = f.DiffIDs
	if cfg.RootFS.DiffIDs == nil {
		cfg.RootFS.DiffIDs = []digest.Digest{}
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return "", nil, err
	}
	return in.ref, raw, nil
}
