package cli

import (
	"context"

	"github.com/spf13/cobra"

	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"github.com/kumocloud/kumo/client"
	"io"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// column is one table column: a header and how to read it from an object.
type column[T any] struct {
	header string
	value  func(T) string
}

func col[T any](h string, f func(T) string) column[T] { return column[T]{h, f} }

// printList prints items as a table, or as JSON/YAML ({"items": [...]}).
func printList[T any](a *app, items []T, cols []column[T]) error {
	switch a.output {
	case "json", "yaml":
		if items == nil {
			items = []T{}
		}
		return a.printData(map[string]any{"items": items})
	case "csv":
		w := csv.NewWriter(a.stdout)
		hs := make([]string, len(cols))
		for i, c := range cols {
			hs[i] = strings.ToLower(strings.ReplaceAll(c.header, " ", "_"))
		}
		w.Write(hs)
		for _, it := range items {
			vs := make([]string, len(cols))
			for i, c := range cols {
				vs[i] = c.value(it)
			}
			w.Write(vs)
		}
		w.Flush()
		return w.Error()
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	hs := make([]string, len(cols))
	for i, c := range cols {
		hs[i] = c.header
	}
	fmt.Fprintln(tw, strings.Join(hs, "\t"))
	for _, it := range items {
		vs := make([]string, len(cols))
		for i, c := range cols {
			vs[i] = c.value(it)
		}
		fmt.Fprintln(tw, strings.Join(vs, "\t"))
	}
	return tw.Flush()
}

// printObject prints one object: as YAML for the table format (a single
// object reads best as key: value lines), else as asked.
func (a *app) printObject(v any) error { return a.printData(v) }

func (a *app) printData(v any) error {
	switch a.output {
	case "csv":
		return usagef("-o csv is for lists; use json or yaml for one object")
	case "json":
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	default:
		return writeYAML(a.stdout, v)
	}
}

// writeYAML writes v as YAML with the JSON field names and order (it goes
// through JSON, which YAML reads, and drops JSON's flow style).
func writeYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return err
	}
	blockStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

func blockStyle(n *yaml.Node) {
	if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
		n.Style = 0
	}
	if n.Kind == yaml.ScalarNode && n.Style == yaml.DoubleQuotedStyle && !needsQuote(n.Value) {
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// needsQuote: strings YAML would read as something else keep their quotes.
func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return true
	}
	str, ok := v.(string)
	return !ok || str != s || strings.ContainsAny(s, ":#{}[]&*!|>'\"%@`\n")
}

// printCompactJSON prints v as one JSON line (for streams).
func (a *app) printCompactJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(a.stdout, string(b))
	return err
}

// listCmd is the "list" verb of a noun: --label and --limit, fetch, print.
func listCmd[T any](a *app, short string, fetch func(*client.Client, context.Context, client.ListOptions) ([]T, error), cols []column[T]) *cobra.Command {
	var labels []string
	var lim int
	cmd := &cobra.Command{
		Use: "list", Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			o, err := a.listOptions(labels, lim)
			if err != nil {
				return err
			}
			items, err := fetch(c, cmd.Context(), o)
			if err != nil {
				return err
			}
			return printList(a, items, cols)
		},
	}
	listFlags(cmd, &labels, &lim)
	return cmd
}
