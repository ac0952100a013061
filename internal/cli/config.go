package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/kumocloud/kumo/internal/atomicfile"
)

// Config is the CLI's file of remotes (servers logged in to), kept 0600
// because it holds tokens.
type Config struct {
	Current string            `yaml:"current,omitempty"`
	Remotes map[string]Remote `yaml:"remotes,omitempty"`
	path    string
}

// Remote is one server the user logged in to.
type Remote struct {
	URL         string `yaml:"url"`
	Fingerprint string `yaml:"ca_fingerprint"`
	Token       string `yaml:"token"`
	TokenID     string `yaml:"token_id,omitempty"`
	User        string `yaml:"user,omitempty"`
	Project     string `yaml:"project,omitempty"`
}

// configPath: $KUMO_CONFIG, else $XDG_CONFIG_HOME/kumo/config.yaml, else
// ~/.config/kumo/config.yaml.
func configPath() (string, error) {
	if p := os.Getenv("KUMO_CONFIG"); p != "" {
		return p, nil
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil || home == "" {
			return "", errors.New("no home directory: set KUMO_CONFIG to a file path, or use --socket / KUMO_REMOTE")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "kumo", "config.yaml"), nil
}

func loadConfig() (*Config, error) {
	path, err := configPath()
	if err != nil {
		return &Config{Remotes: map[string]Remote{}}, err
	}
	c := &Config{Remotes: map[string]Remote{}, path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := yaml.Unmarshal(b, c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.Remotes == nil {
		c.Remotes = map[string]Remote{}
	}
	return c, nil
}

func (c *Config) save() error {
	if c.path == "" {
		p, err := configPath()
		if err != nil {
			return err
		}
		c.path = p
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return atomicfile.Write(c.path, b, 0o600)
}

func (c *Config) names() []string {
	var n []string
	for k := range c.Remotes {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
