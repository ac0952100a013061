package volumes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
)

// Manifests: a backup's chunk list is kept beside the chunks, not in its
// store record (a 16 TiB volume has four million chunks: no store value
// and no request body holds them). It is a file of fixed-width lines, one
// a chunk: its sha256, or 64 dashes for a chunk of zeros. An agent sends
// it in pages, each written at its place in DATA_DIR/volume-backups/tmp/
// manifest-<backup id> (so a page sent twice, or out of order, does no
// harm); the last page checks it whole and, once no chunk is missing,
// renames it to manifests/<backup id> as the backup becomes available.
// Backups made before this kept their list in the record (Chunks): both
// are read.

const (
	lineLen  = 65 // 64 characters and a newline
	zeroLine = "----------------------------------------------------------------"
)

func (svc *Service) manifestPath(id string) string {
	return filepath.Join(svc.dir, "manifests", id)
}

func (svc *Service) partialManifestPath(id string) string {
	return filepath.Join(svc.dir, "tmp", "manifest-"+id)
}

func checkBackupID(id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return fmt.Errorf("backup id %q", id)
	}
	return nil
}

// writeManifestPart writes chunks at their place in a backup's partial
// manifest.
func (svc *Service) writeManifestPart(id string, offset int64, chunks []string) error {
	if offset < 0 || offset > maxChunks {
		return errs.Invalid("offset", "offset %d: a chunk's index, 0 to %d", offset, maxChunks)
	}
	if len(chunks) > api.BackupManifestPage {
		return errs.Invalid("chunks", "%d chunks: a page holds at most %d", len(chunks), api.BackupManifestPage)
	}
	if offset+int64(len(chunks)) > maxChunks {
		return errs.Invalid("chunks", "more chunks than a volume of %d GiB has", api.MaxVolumeGiB)
	}
	var buf bytes.Buffer
	for _, c := range chunks {
		switch {
		case c == "":
			buf.WriteString(zeroLine)
		case sumRE.MatchString(c):
			buf.WriteString(c)
		default:
			return errs.Invalid("chunks", "chunk %q is not a sha256", c)
		}
		buf.WriteByte('\n')
	}
	if err := checkBackupID(id); err != nil {
		return err
	}
	// A backup still being made whose manifest is already in place: the
	// server died (or its write lost a race) between the rename and the
	// record. The host's retry of the last page takes it back.
	if _, err := os.Stat(svc.partialManifestPath(id)); errors.Is(err, os.ErrNotExist) {
		if err := os.Rename(svc.manifestPath(id), svc.partialManifestPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(svc.partialManifestPath(id), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(buf.Bytes(), offset*lineLen); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// partialChunks calls fn with every chunk a backup being made has listed
// so far: its partial manifest (or its finished one, renamed into place
// before its record said so), lines never written skipped.
func (svc *Service) partialChunks(id string, fn func(i int64, sum string) error) error {
	if err := checkBackupID(id); err != nil {
		return nil
	}
	f, err := os.Open(svc.partialManifestPath(id))
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.Open(svc.manifestPath(id))
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing listed yet
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	line := make([]byte, lineLen)
	for i := int64(0); ; i++ {
		if _, err := io.ReadFull(r, line); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		if s := string(line[:64]); line[64] == '\n' && sumRE.MatchString(s) {
			if err := fn(i, s); err != nil {
				return err
			}
		}
	}
}

// maxChunks is the most chunks a manifest has: those of the biggest
// volume.
const maxChunks = api.MaxVolumeGiB << 30 / api.BackupChunk

// manifestReader reads a manifest file line by line.
type manifestReader struct {
	f    *os.File
	buf  []byte
	n    int64 // lines in all
	next int64
}

func openManifest(path string) (*manifestReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &manifestReader{f: f, buf: make([]byte, 0), n: st.Size() / lineLen}, nil
}

// page reads count lines from offset; a line never written (a page not
// sent) is an error.
func (m *manifestReader) page(offset, count int64) ([]string, error) {
	if offset >= m.n {
		return []string{}, nil
	}
	count = min(count, m.n-offset)
	b := make([]byte, count*lineLen)
	if _, err := m.f.ReadAt(b, offset*lineLen); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	out := make([]string, count)
	for i := range out {
		line := b[i*lineLen : (i+1)*lineLen]
		s := string(line[:64])
		switch {
		case line[64] != '\n':
			return nil, errs.Invalid("chunks", "chunk %d of the manifest was never sent", offset+int64(i))
		case s == zeroLine:
		case sumRE.MatchString(s):
			out[i] = s
		default:
			return nil, errs.Invalid("chunks", "chunk %d of the manifest was never sent", offset+int64(i))
		}
	}
	return out, nil
}

// each calls fn with every chunk in order, a page at a time.
func (m *manifestReader) each(fn func(i int64, sum string) error) error {
	for off := int64(0); off < m.n; off += api.BackupManifestPage {
		p, err := m.page(off, api.BackupManifestPage)
		if err != nil {
			return err
		}
		for i, s := range p {
			if err := fn(off+int64(i), s); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachChunk calls fn with every chunk of a finished backup.
func (svc *Service) eachChunk(b api.VolumeBackup, fn func(i int64, sum string) error) error {
	if b.Chunks != nil {
		for i, c := range b.Chunks {
			if err := fn(int64(i), c); err != nil {
				return err
			}
		}
		return nil
	}
	if b.Status != api.VolumeAvailable || checkBackupID(b.ID) != nil {
		return nil
	}
	m, err := openManifest(svc.manifestPath(b.ID))
	if err != nil {
		return err
	}
	defer m.f.Close()
	return m.each(fn)
}

// manifestPage is a page of a finished backup's manifest (limit 0: all).
func (svc *Service) manifestPage(b api.VolumeBackup, offset, limit int64) (api.BackupManifest, error) {
	if offset < 0 || limit < 0 {
		return api.BackupManifest{}, errs.Invalid("offset", "offset and limit are not negative")
	}
	if b.Chunks != nil {
		n := int64(len(b.Chunks))
		end := n
		if limit > 0 {
			end = min(n, offset+limit)
		}
		return api.BackupManifest{Chunks: b.Chunks[min(offset, n):max(end, min(offset, n))], Offset: offset, Count: n}, nil
	}
	if err := checkBackupID(b.ID); err != nil {
		return api.BackupManifest{}, err
	}
	m, err := openManifest(svc.manifestPath(b.ID))
	if err != nil {
		return api.BackupManifest{}, err
	}
	defer m.f.Close()
	if limit == 0 {
		limit = m.n
	}
	p, err := m.page(offset, limit)
	return api.BackupManifest{Chunks: p, Offset: offset, Count: m.n}, err
}

// chunkSets keeps the chunk set of the backup last restored from, so an
// agent's chunk reads do not each read its manifest.
type chunkSets struct {
	mu  sync.Mutex
	id  string
	set map[string]bool
}

// has says whether a finished backup lists a chunk.
func (svc *Service) hasChunk(b api.VolumeBackup, sum string) (bool, error) {
	svc.sets.mu.Lock()
	defer svc.sets.mu.Unlock()
	if svc.sets.id != b.ID {
		set := map[string]bool{}
		if err := svc.eachChunk(b, func(_ int64, s string) error {
			set[s] = true
			return nil
		}); err != nil {
			return false, err
		}
		svc.sets.id, svc.sets.set = b.ID, set
	}
	return sum != "" && svc.sets.set[sum], nil
}
