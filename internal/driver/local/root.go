package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// Root is a directory that holds a tenant's files: an image being unpacked
// into the host's cache, or a container's root filesystem. Tenants put
// symlinks in there (absolute ones are meant to resolve inside the
// container), and kumo runs in the host's mount namespace, so no path
// under a Root is ever walked by host path names: every lookup is made by
// the kernel relative to the Root's handle and confined to it (openat2),
// and a file kumo writes replaces whatever link was at its name instead of
// following it.
type Root struct{ f *os.File }

// OpenRoot opens dir as a Root. dir itself is kumo's own path (a cache or
// instance directory), not tenant content.
func OpenRoot(dir string) (*Root, error) {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &Root{f: f}, nil
}

// Close releases the Root's handle.
func (r *Root) Close() error { return r.f.Close() }

func (r *Root) fd() int { return int(r.f.Fd()) }

// beneathNoLinks is how an unpacked archive's paths are resolved: below
// the root only, and through no symlink at all (an archive that writes
// through a link it made itself is refused, as GNU tar's
// --keep-directory-symlink is not the default either).
var beneathNoLinks = unix.OpenHow{
	Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
}

// splitRel splits a cleaned relative path into its directory ("" for the
// root) and final name.
func splitRel(rel string) (string, string) {
	dir, base := path.Split(rel)
	return strings.TrimSuffix(dir, "/"), base
}

// openDirNoFollow opens the directory rel under the root through no
// symlink, making missing directories (0755) when create is set. The
// caller closes the returned fd.
func (r *Root) openDirNoFollow(rel string, create bool) (int, error) {
	if rel == "" || rel == "." {
		return unix.Openat2(r.fd(), ".", &beneathNoLinks)
	}
	fd, err := unix.Openat2(r.fd(), rel, &beneathNoLinks)
	if err == nil || !errors.Is(err, unix.ENOENT) || !create {
		return fd, noFollowError(rel, err)
	}
	// Some are missing: walk one name at a time, making what is not there.
	fd, err = unix.Openat2(r.fd(), ".", &beneathNoLinks)
	if err != nil {
		return -1, err
	}
	done := ""
	for _, part := range strings.Split(rel, "/") {
		done = path.Join(done, part)
		if err := unix.Mkdirat(fd, part, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, noFollowError(done, err)
		}
		next, err := unix.Openat2(fd, part, &beneathNoLinks)
		unix.Close(fd)
		if err != nil {
			return -1, noFollowError(done, err)
		}
		fd = next
	}
	return fd, nil
}

// noFollowError says in a user's words why a path could not be used.
func noFollowError(rel string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%q goes through a symlink", rel)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%q is not a directory", rel)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%q leaves the root", rel)
	}
	return fmt.Errorf("%q: %w", rel, err)
}

// Mkdir makes the directory rel with mode (parents made 0755), following
// no symlink; an entry of another kind at rel (a symlink, a file) is
// replaced, never followed.
func (r *Root) Mkdir(rel string, mode uint32) error {
	dir, base := splitRel(rel)
	pfd, err := r.openDirNoFollow(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return noFollowError(rel, err)
		}
	}
	if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return noFollowError(rel, err)
	}
	// The mode is set through a handle of the directory itself (mkdirat
	// is cut by the umask; a chmod by name could follow a link).
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return noFollowError(rel, err)
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, mode&0o7777)
}

// Create writes the regular file rel from src with mode, following no
// symlink on the way; whatever was at rel (a file, a hard link to another
// file, a symlink) is unlinked first, so nothing is written through it.
// It returns the bytes written.
func (r *Root) Create(rel string, src io.Reader, mode uint32) (int64, error) {
	dir, base := splitRel(rel)
	pfd, err := r.openDirNoFollow(dir, true)
	if err != nil {
		return 0, err
	}
	defer unix.Close(pfd)
	n, err := replaceFile(pfd, base, src, mode)
	if err != nil {
		return n, noFollowError(rel, err)
	}
	return n, nil
}

// Symlink makes rel a symlink to target (which is never resolved here),
// replacing what was there.
func (r *Root) Symlink(rel, target string) error {
	return r.replace(rel, func(pfd int, base string) error { return unix.Symlinkat(target, pfd, base) })
}

// Link makes rel a hard link to src, both under the root and reached
// through no symlink; a src that is itself a symlink is linked as the
// link, not followed.
func (r *Root) Link(rel, src string) error {
	sdir, sbase := splitRel(src)
	sfd, err := r.openDirNoFollow(sdir, false)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	return r.replace(rel, func(pfd int, base string) error { return unix.Linkat(sfd, sbase, pfd, base, 0) })
}

// replace unlinks what is at rel (reached through no symlink) and makes
// the new entry with mk(parent fd, name).
func (r *Root) replace(rel string, mk func(pfd int, base string) error) error {
	dir, base := splitRel(rel)
	pfd, err := r.openDirNoFollow(dir, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unlinkNonDir(pfd, base); err != nil {
		return noFollowError(rel, err)
	}
	return noFollowError(rel, mk(pfd, base))
}

// WriteGuestFile writes a file kumo gives the guest (its hostname,
// user-data, name servers) at rel as the guest will look it up: the
// directories on the way are resolved inside the root the way the
// container sees them (an image's /var/lib -> /data leads to
// <root>/data), made when missing; the file itself replaces whatever was
// at its name (an image's /etc/resolv.conf -> ../run/... symlink is
// replaced, never written through).
func (r *Root) WriteGuestFile(rel string, data []byte, mode uint32) error {
	dir, base := splitRel(path.Clean("/" + rel)[1:])
	if base == "" {
		return fmt.Errorf("no file name in %q", rel)
	}
	d, err := pathrs.MkdirAllHandle(r.f, "/"+dir, 0o755)
	if err != nil {
		return fmt.Errorf("writing /%s for the guest: /%s in its root is not a directory (nor a link to one inside the root): %w", rel, dir, errnoOnly(err))
	}
	defer d.Close()
	if _, err := replaceFile(int(d.Fd()), base, strings.NewReader(string(data)), mode); err != nil {
		return fmt.Errorf("writing /%s for the guest: %w", rel, errnoOnly(err))
	}
	return nil
}

// errnoOnly is the kernel's word for an error, without the host paths the
// libraries put around it (the message reaches the tenant).
func errnoOnly(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// replaceFile unlinks name in dirfd and writes a new regular file there
// (O_EXCL|O_NOFOLLOW: were a link put back meanwhile, it fails).
func replaceFile(dirfd int, name string, src io.Reader, mode uint32) (int64, error) {
	if err := unlinkNonDir(dirfd, name); err != nil {
		return 0, err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	n, err := io.Copy(f, src)
	if err != nil {
		return n, err
	}
	// The mode is set on the handle: mkdir and open are cut by the umask.
	if err := unix.Fchmod(fd, mode&0o7777); err != nil {
		return n, err
	}
	return n, f.Close()
}

// unlinkNonDir removes name unless it is missing; a directory is an error
// (a file does not silently take the place of a tree).
func unlinkNonDir(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("a directory is in the way")
	}
	return err
}
