package local

// OpenDir opens the directory rel under the root following no symlink;
// the caller closes the returned fd.
func (r *Root) OpenDir(rel string) (int, error) { return r.openDirNoFollow(rel, false) }
