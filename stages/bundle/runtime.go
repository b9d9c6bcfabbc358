package bundle

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RuntimeConfig returns the config.json that oci:// writes for the image
// config (the raw JSON) and the root filesystem at rootfs, through which
// user and group names are resolved (read confined to it). Other outputs
// that lay out a runc bundle (mounts://) use it.
func RuntimeConfig(config []byte, rootfs string) ([]byte, error) {
	var img ocispec.Image
	if err := json.Unmarshal(config, &img); err != nil {
		return nil, fmt.Errorf("image config is not valid JSON: %w", err)
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	s, err := buildSpec(img, func(name string) (io.ReadCloser, error) { return root.Open(name) })
	if err != nil {
		return nil, err
	}
	return marshalSorted(s)
}

// ContainerConfig returns the image config as oci:// writes it to
// container-config.json: 4-space indents, sorted keys.
func ContainerConfig(config []byte) ([]byte, error) {
	var generic any
	if err := json.Unmarshal(config, &generic); err != nil {
		return nil, fmt.Errorf("image config is not valid JSON: %w", err)
	}
	return json.MarshalIndent(generic, "", "    ")
}
