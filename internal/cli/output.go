package cli

import (
	"context"

	"github.com/spf13/cobra"

	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/validate"
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
			vs[i] = termSafe(c.value(it))
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
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return err
		}
		_, err := a.stdout.Write(jsonSafe(buf.Bytes()))
		return err
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
	if n.Kind == yaml.ScalarNode {
		// YAML escapes C0 and C1 controls in double quotes, but prints
		// bidi controls as they are: they show as '?' (-o json keeps
		// them, escaped).
		n.Value = strings.Map(func(r rune) rune {
			if r >= 0x200e && validate.Control(r) {
				return '?'
			}
			return r
		}, n.Value)
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
	// Control characters stay double-quoted: YAML escapes them there.
	return !ok || str != s || strings.ContainsAny(s, ":#{}[]&*!|>'\"%@`\n") || validate.Unprintable(s) >= 0
}

// jsonSafe writes the control characters JSON leaves raw (C1, bidi
// controls; they can only be inside strings) as \u escapes: the same
// JSON, safe on a terminal.
func jsonSafe(b []byte) []byte {
	if validate.Unprintable(string(b)) < 0 {
		return b
	}
	var out bytes.Buffer
	for _, r := range string(b) {
		if r >= 0x7f && validate.Control(r) {
			fmt.Fprintf(&out, "\\u%04x", r)
		} else {
			out.WriteRune(r)
		}
	}
	return out.Bytes()
}

// termSafe makes text safe to print to a terminal: a control character
// or a bidi control (in a name stored before they were refused, a reason
// quoting a guest's console) is shown as an escape, \x1b or \u202e, never
// obeyed. Tables, show, errors and events print through it; the byte
// streams of exec, logs and the console are the guest's own terminal
// output and pass as they are.
func termSafe(s string) string {
	if validate.Unprintable(s) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !validate.Control(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
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
