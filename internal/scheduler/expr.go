package scheduler

import (
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
)

// The expression language of requirements and ranks (docs/scheduler.md):
//
//	expr    := or
//	or      := and  ( ("|" | "||") and )*
//	and     := not  ( ("&" | "&&") not )*
//	not     := "!" not | cmp
//	cmp     := sum  [ ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") sum ]
//	sum     := term ( ("+" | "-") term )*
//	term    := unary ( ("*" | "/") unary )*
//	unary   := "-" unary | primary
//	primary := NUMBER | STRING | NAME | "(" expr ")"
//
// NAMEs are host variables (FREE_MEM, ARCH, RACK...), looked up without
// regard to case. String equality takes shell globs ("r1*").

// Expr is a parsed expression.
type Expr struct {
	src  string
	root node
}

// String returns the source text.
func (e *Expr) String() string { return e.src }

// SyntaxError points at the column (1-based) where parsing failed.
type SyntaxError struct {
	Column int
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

type tokKind int

const (
	tEOF tokKind = iota
	tNum
	tStr
	tName
	tOp
	tLParen
	tRParen
)

type token struct {
	kind tokKind
	text string
	num  float64
	col  int
}

func lex(src string) ([]token, error) {
	var out []token
	i := 0
	for i < len(src) {
		c := src[i]
		col := i + 1
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			out = append(out, token{kind: tLParen, text: "(", col: col})
			i++
		case c == ')':
			out = append(out, token{kind: tRParen, text: ")", col: col})
			i++
		case c == '"':
			j := i + 1
			var sb strings.Builder
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				sb.WriteByte(src[j])
				j++
			}
			if j >= len(src) {
				return nil, &SyntaxError{col, "string not closed: add a closing \""}
			}
			out = append(out, token{kind: tStr, text: sb.String(), col: col})
			i = j + 1
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			n, err := strconv.ParseFloat(src[i:j], 64)
			if err != nil {
				return nil, &SyntaxError{col, fmt.Sprintf("%q is not a number", src[i:j])}
			}
			out = append(out, token{kind: tNum, text: src[i:j], num: n, col: col})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '-' || src[j] == '.' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			out = append(out, token{kind: tName, text: src[i:j], col: col})
			i = j
		default:
			ops := []string{"==", "!=", "<=", ">=", "&&", "||", "=", "<", ">", "&", "|", "!", "+", "-", "*", "/"}
			found := ""
			for _, op := range ops {
				if strings.HasPrefix(src[i:], op) {
					found = op
					break
				}
			}
			if found == "" {
				return nil, &SyntaxError{col, fmt.Sprintf("unexpected character %q", c)}
			}
			out = append(out, token{kind: tOp, text: found, col: col})
			i += len(found)
		}
	}
	return append(out, token{kind: tEOF, col: len(src) + 1}), nil
}

// Parse parses an expression; errors point at the column.
func Parse(src string) (*Expr, error) {
	if len(src) > 4096 {
		return nil, &SyntaxError{1, "expression longer than 4096 characters"}
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if toks[0].kind == tEOF {
		return nil, &SyntaxError{1, "empty expression"}
	}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, &SyntaxError{t.col, fmt.Sprintf("unexpected %q: expected an operator or the end", t.text)}
	}
	return &Expr{src: src, root: n}, nil
}

type parser struct {
	toks  []token
	pos   int
	depth int
}

func (p *parser) peek() token { return p.toks[p.pos] }
func (p *parser) next() token { t := p.toks[p.pos]; p.pos++; return t }

func (p *parser) isOp(ops ...string) (token, bool) {
	t := p.peek()
	if t.kind != tOp {
		return t, false
	}
	for _, o := range ops {
		if t.text == o {
			p.pos++
			return t, true
		}
	}
	return t, false
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	for err == nil {
		t, ok := p.isOp("|", "||")
		if !ok {
			break
		}
		var r node
		if r, err = p.and(); err == nil {
			l = &binary{op: "|", l: l, r: r, col: t.col}
		}
	}
	return l, err
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	for err == nil {
		t, ok := p.isOp("&", "&&")
		if !ok {
			break
		}
		var r node
		if r, err = p.not(); err == nil {
			l = &binary{op: "&", l: l, r: r, col: t.col}
		}
	}
	return l, err
}

func (p *parser) not() (node, error) {
	if t, ok := p.isOp("!"); ok {
		if p.depth++; p.depth > 200 {
			return nil, &SyntaxError{t.col, "expression nested too deeply"}
		}
		n, err := p.not()
		p.depth--
		return &unaryNode{op: "!", x: n, col: t.col}, err
	}
	return p.cmp()
}

func (p *parser) cmp() (node, error) {
	l, err := p.sum()
	if err != nil {
		return nil, err
	}
	if t, ok := p.isOp("=", "==", "!=", "<", "<=", ">", ">="); ok {
		r, err := p.sum()
		if err != nil {
			return nil, err
		}
		op := t.text
		if op == "==" {
			op = "="
		}
		return &binary{op: op, l: l, r: r, col: t.col}, nil
	}
	return l, nil
}

func (p *parser) sum() (node, error) {
	l, err := p.term()
	for err == nil {
		t, ok := p.isOp("+", "-")
		if !ok {
			break
		}
		var r node
		if r, err = p.term(); err == nil {
			l = &binary{op: t.text, l: l, r: r, col: t.col}
		}
	}
	return l, err
}

func (p *parser) term() (node, error) {
	l, err := p.unary()
	for err == nil {
		t, ok := p.isOp("*", "/")
		if !ok {
			break
		}
		var r node
		if r, err = p.unary(); err == nil {
			l = &binary{op: t.text, l: l, r: r, col: t.col}
		}
	}
	return l, err
}

func (p *parser) unary() (node, error) {
	if t, ok := p.isOp("-"); ok {
		if p.depth++; p.depth > 200 {
			return nil, &SyntaxError{t.col, "expression nested too deeply"}
		}
		n, err := p.unary()
		p.depth--
		return &unaryNode{op: "-", x: n, col: t.col}, err
	}
	return p.primary()
}

func (p *parser) primary() (node, error) {
	t := p.next()
	switch t.kind {
	case tNum:
		return &lit{v: value{num: t.num, isNum: true}}, nil
	case tStr:
		return &lit{v: value{str: t.text}}, nil
	case tName:
		return &name{name: strings.ToUpper(t.text), col: t.col}, nil
	case tLParen:
		if p.depth++; p.depth > 200 {
			return nil, &SyntaxError{t.col, "expression nested too deeply"}
		}
		n, err := p.or()
		p.depth--
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, &SyntaxError{c.col, fmt.Sprintf("expected \")\" to close the \"(\" at column %d", t.col)}
		}
		return n, nil
	case tEOF:
		return nil, &SyntaxError{t.col, "expression ends too early: expected a value"}
	}
	return nil, &SyntaxError{t.col, fmt.Sprintf("unexpected %q: expected a number, a \"string\", a name or \"(\"", t.text)}
}

// value is a number, a string, a boolean (a number 0/1 with isBool) or
// missing (a name the host does not have).
type value struct {
	num     float64
	str     string
	isNum   bool
	missing string // the missing name
}

func (v value) truthy() bool {
	if v.missing != "" {
		return false
	}
	if v.isNum {
		return v.num != 0 && !math.IsNaN(v.num)
	}
	return v.str != ""
}

func boolv(b bool) value {
	if b {
		return value{num: 1, isNum: true}
	}
	return value{isNum: true}
}

// Vars gives a host's variables to an expression.
type Vars interface {
	Lookup(name string) (num float64, str string, isNum, ok bool)
}

type node interface{ eval(Vars) value }

type lit struct{ v value }

func (l *lit) eval(Vars) value { return l.v }

type name struct {
	name string
	col  int
}

func (n *name) eval(vs Vars) value {
	num, str, isNum, ok := vs.Lookup(n.name)
	if !ok {
		return value{missing: n.name}
	}
	return value{num: num, str: str, isNum: isNum}
}

type unaryNode struct {
	op  string
	x   node
	col int
}

func (u *unaryNode) eval(vs Vars) value {
	v := u.x.eval(vs)
	if u.op == "!" {
		return boolv(!v.truthy())
	}
	if !v.isNum {
		return value{missing: v.missing}
	}
	return value{num: -v.num, isNum: true}
}

type binary struct {
	op   string
	l, r node
	col  int
}

func (b *binary) eval(vs Vars) value {
	switch b.op {
	case "&":
		return boolv(b.l.eval(vs).truthy() && b.r.eval(vs).truthy())
	case "|":
		return boolv(b.l.eval(vs).truthy() || b.r.eval(vs).truthy())
	}
	l, r := b.l.eval(vs), b.r.eval(vs)
	if l.missing != "" || r.missing != "" {
		if b.op == "!=" {
			// A host without RACK is not in rack "r1".
			return boolv(true)
		}
		return value{missing: l.missing + r.missing}
	}
	switch b.op {
	case "+", "-", "*", "/":
		if !l.isNum || !r.isNum {
			return value{missing: "(arithmetic on text)"}
		}
		switch b.op {
		case "+":
			return value{num: l.num + r.num, isNum: true}
		case "-":
			return value{num: l.num - r.num, isNum: true}
		case "*":
			return value{num: l.num * r.num, isNum: true}
		default:
			if r.num == 0 {
				return value{num: 0, isNum: true}
			}
			return value{num: l.num / r.num, isNum: true}
		}
	}
	var c int
	if l.isNum && r.isNum {
		switch {
		case l.num < r.num:
			c = -1
		case l.num > r.num:
			c = 1
		}
	} else {
		ls, rs := l.text(), r.text()
		if b.op == "=" || b.op == "!=" {
			eq := ls == rs
			if !eq && strings.ContainsAny(rs, "*?[") {
				eq, _ = path.Match(rs, ls)
			}
			return boolv(eq == (b.op == "="))
		}
		c = strings.Compare(ls, rs)
	}
	switch b.op {
	case "=":
		return boolv(c == 0)
	case "!=":
		return boolv(c != 0)
	case "<":
		return boolv(c < 0)
	case "<=":
		return boolv(c <= 0)
	case ">":
		return boolv(c > 0)
	default:
		return boolv(c >= 0)
	}
}

func (v value) text() string {
	if v.isNum {
		return strconv.FormatFloat(v.num, 'f', -1, 64)
	}
	return v.str
}

// Match evaluates a requirement: true when the host satisfies it. When it
// is false because the host lacks a variable, missing names it.
func (e *Expr) Match(vs Vars) (ok bool, missing string) {
	v := e.root.eval(vs)
	return v.truthy(), v.missing
}

// Number evaluates a rank: a number, 0 when undefined for this host.
func (e *Expr) Number(vs Vars) float64 {
	v := e.root.eval(vs)
	if !v.isNum || math.IsNaN(v.num) || math.IsInf(v.num, 0) {
		return 0
	}
	return v.num
}
