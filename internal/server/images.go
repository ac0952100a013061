package server

import (
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) getImages(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	imgs, err := s.images.List(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(imgs, "")
}

func (s *Server) postImages(r *request) response.Response {
	var req api.ImagesPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	if err := mayPublish(r, req.Visibility); err != nil {
		return response.Error(err)
	}
	img, err := s.images.Create(r.Context(), project, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(img)
}

// mayPublish refuses public visibility to anyone but a cloud admin: a
// public image is offered to every project under its bare name, so a
// tenant publishing one would put its bytes behind names other projects
// use. Tenants share with named projects, which accept or not.
func mayPublish(r *request, visibility string) error {
	if visibility == api.VisibilityPublic && !r.p.CloudAdmin {
		return errs.Forbidden("only a cloud admin may make an image public (every project would see it under its bare name); share it with named projects instead (visibility shared, shared_with), which accept it")
	}
	return nil
}

// getImageShares lists the images other projects offer this one.
func (s *Server) getImageShares(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	shares, err := s.images.SharesFor(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(shares, "")
}

// putImageShare accepts or rejects an image another project offers.
func (s *Server) putImageShare(r *request) response.Response {
	var req api.ImageSharePut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	sh, err := s.images.AnswerShare(r.Context(), r.PathValue("project"), r.PathValue("owner"), r.PathValue("name"), req.Status)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(sh)
}

func (s *Server) getImage(r *request) response.Response {
	img, err := s.images.Resolve(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(img)
}

func (s *Server) patchImage(r *request) response.Response {
	var req api.ImagePatch
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if req.Visibility != nil {
		if err := mayPublish(r, *req.Visibility); err != nil {
			return response.Error(err)
		}
	}
	img, err := s.images.Patch(r.Context(), r.PathValue("project"), r.PathValue("name"), req)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(img)
}

func (s *Server) deleteImage(r *request) response.Response {
	force, err := parseBool(r.Request, "force")
	if err != nil {
		return response.Error(err)
	}
	if force && !r.p.CloudAdmin {
		return response.Error(errs.Forbidden("only a cloud admin may force the deletion of an image in use"))
	}
	if err := s.images.Delete(r.Context(), r.PathValue("project"), r.PathValue("name"), force); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

func (s *Server) putImageFile(r *request) response.Response {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/octet-stream" {
		return response.Error(errs.Invalid("Content-Type", "send the image bytes as application/octet-stream, not %q", ct))
	}
	img, err := s.images.Upload(r.Context(), r.PathValue("project"), r.PathValue("name"), r.Body)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(img)
}

// serveBlob streams an image's bytes.
func (s *Server) serveBlob(w http.ResponseWriter, r *request, img api.Image) {
	if img.Status != api.ImageActive {
		response.Error(errs.Conflict("image %q is %s: it has no bytes yet", img.Name, img.Status)).Render(w, r.Request)
		return
	}
	f, err := os.Open(s.images.BlobPath(img.SHA256))
	if err != nil {
		response.Error(err).Render(w, r.Request)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(img.Size, 10))
	w.Header().Set("X-Image-Sha256", img.SHA256)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": img.Name}))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, f)
}

func (s *Server) getImageFile(r *request, w http.ResponseWriter) {
	img, err := s.images.Resolve(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		response.Error(err).Render(w, r.Request)
		return
	}
	s.serveBlob(w, r, img)
}
