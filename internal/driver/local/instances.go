package local

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"

	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/driver"
)

// Instances is where a driver keeps its instances: one directory each,
// DIR/<id>, with meta.json holding the driver's own record of it. Every
// driver's record has the instance's spec under "spec".
type Instances string

// Dir is the instance's directory.
func (in Instances) Dir(id string) string { return filepath.Join(string(in), id) }

// Path is a file in the instance's directory.
func (in Instances) Path(id, name string) string { return filepath.Join(string(in), id, name) }

// Has says whether the driver has the instance (its meta.json exists).
func (in Instances) Has(id string) bool {
	_, err := os.Stat(in.Path(id, "meta.json"))
	return err == nil
}

// IDs lists the instances with a record.
func (in Instances) IDs() ([]string, error) {
	es, err := os.ReadDir(string(in))
	var ids []string
	for _, e := range es {
		if in.Has(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, err
}

// ReadMeta reads an instance's record (driver.ErrNotFound if it has none).
func ReadMeta[M any](in Instances, id string) (M, error) {
	var m M
	b, err := os.ReadFile(in.Path(id, "meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		return m, driver.ErrNotFound
	}
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

// WriteMeta replaces an instance's record atomically.
func WriteMeta[M any](in Instances, id string, m M) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(in.Path(id, "meta.json"), b, 0o600)
}

// ImagesInUse are the images (by sha256) the instances use: the image
// cache never evicts those.
func (in Instances) ImagesInUse() map[string]bool {
	used := map[string]bool{}
	ids, _ := in.IDs()
	for _, id := range ids {
		if m, err := ReadMeta[struct {
			Spec driver.Spec `json:"spec"`
		}](in, id); err == nil {
			used[m.Spec.ImageSHA256] = true
		}
	}
	return used
}
