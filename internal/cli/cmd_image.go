package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/rootfs"
	"github.com/kumocloud/kumo/internal/vmimage"
)

func (a *app) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Aliases: []string{"images"}, Short: "Images: container rootfs tarballs (VM disks with the VM driver)"}
	var name, kind, format string
	var public bool
	var share []string
	imp := &cobra.Command{
		Use: "import PATH --name NAME [--kind container-rootfs] [--public | --share P,...]", Short: "Upload an image (sha256-checked end to end)", Args: cobra.ExactArgs(1),
		Example: "  kumo image import ./tiny-rootfs.tar.gz --name tiny --kind container-rootfs --public",
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("kind") {
				kind, _ = guessKind(args[0])
			}
			return a.importImage(cmd, args[0], name, kind, format, public, share)
		},
	}
	imp.Flags().StringVar(&name, "name", "", "image name (default: the file name up to the first dot)")
	imp.Flags().StringVar(&kind, "kind", "container-rootfs", "container-rootfs, vm-disk or vm-kernel")
	imp.Flags().StringVar(&format, "format", "", "tar.gz (default for rootfs), tar, qcow2, raw")
	imp.Flags().BoolVar(&public, "public", false, "every project may use it (cloud admin)")
	imp.Flags().StringSliceVar(&share, "share", nil, "projects to offer it to; each accepts it with 'kumo image share accept'")

	list := &cobra.Command{
		Use: "list", Short: "Images the project can use: its own, public ones and shares it accepted", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			imgs, err := c.Images(cmd.Context(), project)
			if err != nil {
				return err
			}
			return printList(a, imgs, []column[api.Image]{
				col("NAME", func(i api.Image) string {
					if i.Project != project {
						return i.Project + "/" + i.Name
					}
					return i.Name
				}),
				col("KIND", func(i api.Image) string { return i.Kind }),
				col("STATUS", func(i api.Image) string { return i.Status }),
				col("SIZE", func(i api.Image) string { return strconv.FormatInt(i.Size, 10) }),
				col("UNPACKED", func(i api.Image) string { return strconv.FormatInt(i.UnpackedSize, 10) }),
				col("VISIBILITY", func(i api.Image) string { return i.Visibility }),
				col("SHA256", func(i api.Image) string {
					if len(i.SHA256) > 12 {
						return i.SHA256[:12] + "…"
					}
					return i.SHA256
				}),
				col("AGE", func(i api.Image) string { return age(i.CreatedAt) }),
			})
		},
	}
	show := &cobra.Command{
		Use: "show NAME|OWNER/NAME", Short: "Show an image: size, unpacked and virtual size, sha256, status, visibility, who it is shared with", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			img, err := c.Image(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			return a.printObject(img)
		},
	}
	var force bool
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete an image (refused while instances use it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			return c.DeleteImage(cmd.Context(), project, args[0], force)
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete even if in use (cloud admin)")
	var vis string
	var sshare []string
	set := &cobra.Command{
		Use: "set NAME [--visibility private|public|shared] [--share P,...]", Short: "Change who can use an image", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			var p api.ImagePatch
			if cmd.Flags().Changed("visibility") {
				p.Visibility = &vis
			}
			if cmd.Flags().Changed("share") {
				p.SharedWith = sshare
				if p.SharedWith == nil {
					p.SharedWith = []string{}
				}
			}
			img, err := c.PatchImage(cmd.Context(), project, args[0], p)
			if err != nil {
				return err
			}
			return a.printObject(img)
		},
	}
	set.Flags().StringVar(&vis, "visibility", "", "private, public (cloud admin) or shared")
	set.Flags().StringSliceVar(&sshare, "share", nil, "projects to offer it to (with --visibility shared); each accepts or rejects")
	cmd.AddCommand(imp, list, show, del, set, a.imageShareCmd(), a.imageBuildCmd())
	return cmd
}

// imageShareCmd is the receiving end of shares: offered images are usable
// only once accepted.
func (a *app) imageShareCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "share", Short: "Images other projects offer this one: list, accept, reject (usable only once accepted)"}
	list := &cobra.Command{
		Use: "list", Short: "Images offered to the project, each pending, accepted or rejected", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			shares, err := c.ImageShares(cmd.Context(), project)
			if err != nil {
				return err
			}
			return printList(a, shares, []column[api.ImageShare]{
				col("IMAGE", func(s api.ImageShare) string { return s.Image }),
				col("KIND", func(s api.ImageShare) string { return s.Kind }),
				col("STATUS", func(s api.ImageShare) string { return s.Status }),
			})
		},
	}
	answer := func(verb, status string) *cobra.Command {
		return &cobra.Command{
			Use: verb + " OWNER/NAME", Short: strings.ToUpper(verb[:1]) + verb[1:] + " an image another project offers", Args: cobra.ExactArgs(1),
			Example: "  kumo image share " + verb + " research/ubuntu-24.04",
			RunE: func(cmd *cobra.Command, args []string) error {
				owner, name, ok := strings.Cut(args[0], "/")
				if !ok || owner == "" || name == "" {
					return usagef("%q: name the image as OWNER/NAME (kumo image share list shows them)", args[0])
				}
				c, project, err := a.clientAndProject(cmd)
				if err != nil {
					return err
				}
				sh, err := c.AnswerImageShare(cmd.Context(), project, owner, name, status)
				if err != nil {
					return err
				}
				return a.printObject(sh)
			},
		}
	}
	cmd.AddCommand(list, answer("accept", api.ShareAccepted), answer("reject", api.ShareRejected))
	return cmd
}

// guessKind guesses an image's kind and format from its file name: disks
// are vm-disk, the rest a container rootfs ("" format: the kind's default).
// --kind and --format say otherwise.
func guessKind(path string) (kind, format string) {
	for ext, f := range map[string]string{".qcow2": "qcow2", ".raw": "raw", ".img": "raw"} {
		if strings.HasSuffix(path, ext) {
			return api.KindVMDisk, f
		}
	}
	if strings.HasSuffix(path, ".tar") {
		return api.KindContainerRootfs, "tar"
	}
	return api.KindContainerRootfs, ""
}

// importImage registers an image and uploads its file, announcing its
// sha256 so the server checks the bytes end to end.
func (a *app) importImage(cmd *cobra.Command, path, name, kind, format string, public bool, share []string) error {
	c, project, err := a.clientAndProject(cmd)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return usagef("%v", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if name == "" {
		base := path[strings.LastIndex(path, "/")+1:]
		name = strings.ToLower(strings.SplitN(base, ".", 2)[0])
	}
	if format == "" {
		_, format = guessKind(path)
	}
	req := api.ImagesPost{Name: name, Kind: kind, Format: format, SHA256: hex.EncodeToString(h.Sum(nil)), SharedWith: share}
	switch {
	case public:
		req.Visibility = api.VisibilityPublic
	case len(share) > 0:
		req.Visibility = api.VisibilityShared
	}
	if _, err := c.CreateImage(cmd.Context(), project, req); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	img, err := c.UploadImage(cmd.Context(), project, name, f, size)
	if err != nil {
		return fmt.Errorf("uploading %s: %w (the image %q stays registered in error; retry the import or delete it)", path, err, name)
	}
	return a.printObject(img)
}

func (a *app) imageBuildCmd() *cobra.Command {
	var out, busybox, cache, kernelDeb, name, suite, mirror string
	var doImport, public, verbose bool
	var sizeGiB int64
	cmd := &cobra.Command{
		Use:   "build tiny-rootfs|tiny-vm|debian [-f FILE] [--import [--name NAME] [--public]]",
		Short: "Build an image from Debian packages (tiny-rootfs: busybox-static; tiny-vm: the cloud kernel + a busybox initramfs; debian: debootstrap with cloud-init)",
		Long: `Build an image from Debian packages, with nothing downloaded from elsewhere:
  tiny-rootfs  a container rootfs: busybox-static and an init that applies the
               hostname, runs the user-data once and prints "kumo: ready"
  tiny-vm      a vm-kernel image: the kernel of linux-image-cloud-amd64 (fetched
               with apt-get download, never installed) and a busybox initramfs
               that reads the NoCloud seed, applies the hostname, runs a
               user-data script and prints "kumo: ready" on the serial console
  debian       a vm-kernel image: debootstrap of Debian (--suite, from --mirror,
               default this machine's) with systemd, the real cloud-init and the
               cloud kernel; its kernel and initramfs, and its root filesystem as
               an ext4 disk.qcow2 (--size GiB). Takes a few minutes; runs as root.
With --import the image is uploaded too (named after what was built).`,
		Example: "  kumo image build tiny-rootfs -f tiny-rootfs.tar.gz && kumo image import tiny-rootfs.tar.gz --name tiny --public\n  kumo image build tiny-vm --import --public\n  kumo image build debian --import --public",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			what := args[0]
			if what != "tiny-rootfs" && what != "tiny-vm" && what != "debian" {
				return usagef("image %q: this builds tiny-rootfs, tiny-vm or debian", what)
			}
			if out == "" {
				out = what + ".tar.gz"
			}
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			switch what {
			case "tiny-rootfs":
				err = rootfs.Build(f, busybox)
			case "tiny-vm":
				var k vmimage.Kernel
				if k, err = vmimage.FetchKernel(cmd.Context(), cache, kernelDeb); err == nil {
					err = vmimage.BuildTinyVM(f, busybox, k)
				}
			case "debian":
				o := vmimage.DebianOptions{Suite: suite, Mirror: mirror, SizeGiB: sizeGiB}
				if verbose {
					o.Log = a.stderr
				}
				err = vmimage.BuildDebian(cmd.Context(), f, o)
			}
			if err == nil {
				err = f.Close()
			}
			if err != nil {
				f.Close()
				os.Remove(out)
				return err
			}
			st, _ := os.Stat(out)
			fmt.Fprintf(a.stderr, "%s: %d bytes\n", out, st.Size())
			if !doImport {
				return nil
			}
			kind := api.KindVMKernel
			if what == "tiny-rootfs" {
				kind = api.KindContainerRootfs
			}
			if name == "" {
				name = map[string]string{"tiny-rootfs": "tiny", "tiny-vm": "tiny-vm", "debian": "debian"}[what]
			}
			return a.importImage(cmd, out, name, kind, "tar.gz", public, nil)
		},
	}
	cmd.Flags().StringVarP(&out, "file", "f", "", "where to write it (default: NAME.tar.gz)")
	cmd.Flags().StringVar(&busybox, "busybox", rootfs.Busybox, "the busybox-static binary")
	cmd.Flags().StringVar(&cache, "cache", vmimage.DefaultCache, "tiny-vm: where the unpacked kernel package is kept")
	cmd.Flags().StringVar(&kernelDeb, "kernel-deb", "", "tiny-vm: a linux-image-*-cloud-amd64 .deb to use instead of apt-get download")
	cmd.Flags().StringVar(&suite, "suite", "bookworm", "debian: the Debian release")
	cmd.Flags().StringVar(&mirror, "mirror", "", "debian: the Debian mirror (default: the one this machine's apt uses)")
	cmd.Flags().Int64Var(&sizeGiB, "size", 2, "debian: the root filesystem's size in GiB")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "debian: show debootstrap's output")
	cmd.Flags().BoolVar(&doImport, "import", false, "upload it as an image too")
	cmd.Flags().StringVar(&name, "name", "", "with --import: the image name (default tiny for tiny-rootfs, tiny-vm for tiny-vm)")
	cmd.Flags().BoolVar(&public, "public", false, "with --import: every project may use it (cloud admin)")
	return cmd
}
