package main

import (
	"go/ast"
	"go/token"
	"go/types"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// responseKind is what a generated IntoResponse answers.
type responseKind int

const (
	notResponse   responseKind = iota
	okResponse                 // core.OKResponse
	errorResponse              // core.ErrorResponse
)

// responseArgs are the response arguments of a //mire:event line.
type responseArgs struct {
	kind         responseKind
	pos          token.Pos // of the directive
	reasonSet    bool
	reasonQuoted bool   // reason is a text, not a field name
	reason       string // a field name, or the text
}

// unionArgs is a //mire:response line.
type unionArgs struct {
	pos     token.Pos
	members []string // members=; nil: every response event type of the run
	bad     bool     // the line has errors: check nothing more
}

// union is a //mire:response interface the generated file completes.
type union struct {
	name      string
	typesFunc string   // <name>Types
	members   []string // sorted
}

// seal is an unexported method without parameters or results that a union
// declares, generated for a member that does not have it, so that only the
// members implement the union.
type seal struct {
	typeName, method string
}

// unionDirective reads t's //mire:response line c.
func (s *scan) unionDirective(t *typeDecl, c *ast.Comment, args string) {
	name := t.spec.Name.Name
	if t.union != nil {
		s.errorf(c.Pos(), "%s: more than one %s line", name, unionDirective)
		return
	}
	t.union = &unionArgs{pos: c.Pos()}
	list, err := splitArgs(args)
	if err != nil {
		s.errorf(c.Pos(), "%s: bad %s line: %v", name, unionDirective, err)
		t.union.bad = true
		return
	}
	errs := len(s.problems)
	defer func() { t.union.bad = len(s.problems) > errs }()
	for _, arg := range list {
		if arg.key != "members" || arg.value == "" || arg.quoted {
			s.errorf(c.Pos(), "%s: bad %s argument %s: the only argument is members=<type>,<type>,..., e.g. %s members=PaymentTaken,PaymentDeclined",
				name, unionDirective, strconv.Quote(arg.text), unionDirective)
			continue
		}
		if t.union.members != nil {
			s.errorf(c.Pos(), "%s: members= given twice", name)
			continue
		}
		t.union.members = []string{}
		for m := range strings.SplitSeq(arg.value, ",") {
			switch {
			case !token.IsIdentifier(m):
				s.errorf(c.Pos(), "%s: members=: %s is not a type name", name, strconv.Quote(m))
			case slices.Contains(t.union.members, m):
				s.errorf(c.Pos(), "%s: members=: %s is listed twice", name, m)
			default:
				t.union.members = append(t.union.members, m)
			}
		}
	}
}

// response completes e with its IntoResponse: generated for a type marked
// response, hand-written, or none. It reports whether e is fine.
func (s *scan) response(t *typeDecl, e *event) bool {
	name := e.typeName
	m, handWritten := s.methods[name]["IntoResponse"]
	switch {
	case handWritten && m.pointer:
		s.errorf(m.pos, "%s: IntoResponse has a pointer receiver; use a value receiver, func (e %s) IntoResponse() core.ResponseValue, so that the %s a saga decodes is an IntoResponse", name, name, name)
		return false
	case handWritten && t.response.kind != notResponse:
		s.errorf(m.pos, "%s has both a hand-written IntoResponse method and response in its %s line; keep one", name, directive)
		return false
	case handWritten:
		e.answers = true
		return true
	case t.response.kind == notResponse:
		return true
	}
	e.answers, e.response = true, t.response.kind
	if e.response == errorResponse {
		reason, ok := s.reason(t)
		if !ok {
			return false
		}
		e.reason = reason
	}
	return true
}

// reason returns the Go expression of an error response's reason, with e
// the receiver: a field of the struct, a text, or by default the type name
// in words (PaymentDeclined → "payment declined").
func (s *scan) reason(t *typeDecl) (string, bool) {
	r, name := t.response, t.spec.Name.Name
	switch {
	case !r.reasonSet:
		return strconv.Quote(strings.ReplaceAll(kebab(name), "-", " ")), true
	case r.reasonQuoted:
		return strconv.Quote(r.reason), true
	}
	// The saga reads the reply decoded from its stored JSON, so the field
	// must survive encoding. (t is an event, so a struct: checkStruct.)
	st, _ := t.spec.Type.(*ast.StructType)
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.Name != r.reason {
				continue
			}
			var tag string
			if f.Tag != nil {
				tag, _ = strconv.Unquote(f.Tag.Value)
			}
			switch {
			case !n.IsExported():
				s.errorf(n.Pos(), "%s: reason field %s is unexported, so it is not encoded and a saga would read an empty reason; export it", name, n.Name)
			case reflect.StructTag(tag).Get("json") == "-":
				s.errorf(n.Pos(), "%s: reason field %s is tagged json:\"-\", so it is not encoded and a saga would read an empty reason", name, n.Name)
			case isIdent(f.Type, "string"):
				return "e." + n.Name, true
			case s.isStringType(f.Type):
				return "string(e." + n.Name + ")", true
			default:
				s.errorf(n.Pos(), "%s: reason field %s is a %s; want a string (or a string type declared in this package)", name, n.Name, types.ExprString(f.Type))
			}
			return "", false
		}
	}
	s.errorf(r.pos, "%s: reason=%s: %s has no field %s (name a field declared in the struct itself, or give a text: reason=\"...\")", name, r.reason, name, r.reason)
	return "", false
}

func isIdent(x ast.Expr, name string) bool {
	id, ok := x.(*ast.Ident)
	return ok && id.Name == name
}

// isStringType reports whether x names a type of the package whose
// underlying type is string.
func (s *scan) isStringType(x ast.Expr) bool {
	for range 10 { // type A B; type B string: a few steps, never a cycle
		id, ok := x.(*ast.Ident)
		if !ok {
			return false
		}
		t := s.types[id.Name]
		if t == nil || t.spec.TypeParams != nil {
			return false
		}
		if isIdent(t.spec.Type, "string") {
			return true
		}
		x = t.spec.Type
	}
	return false
}

// unions checks the //mire:response interfaces and finds their members
// among events, sorted by name.
func (s *scan) unions(events []event) ([]union, []seal) {
	var names []string
	for name, t := range s.types {
		if t.union != nil && !t.union.bad {
			names = append(names, name)
		}
	}
	slices.Sort(names)

	byType := make(map[string]*event, len(events))
	for i := range events {
		byType[events[i].typeName] = &events[i]
	}
	var unions []union
	var seals []seal
	for _, name := range names {
		t := s.types[name]
		methods, ok := s.checkInterface(t)
		if !ok {
			continue
		}
		u := union{name: name, typesFunc: name + "Types"}
		if t.union.members == nil {
			for _, e := range events {
				if e.answers {
					u.members = append(u.members, e.typeName)
				}
			}
		}
		for _, m := range t.union.members {
			e, isEvent := byType[m]
			switch {
			case s.types[m] == nil:
				s.errorf(t.union.pos, "%s: member %s is not a type declared in this package", name, m)
			case !isEvent:
				s.errorf(t.union.pos, "%s: member %s is not one of the event types generated for (mark it %s response, or list it in -types)", name, m, directive)
			case !e.answers:
				s.errorf(t.union.pos, "%s: member %s has no IntoResponse method: mark it %s response (or response=error), or write the method", name, m, directive)
			default:
				u.members = append(u.members, m)
			}
		}
		slices.Sort(u.members)
		if len(u.members) == 0 {
			if t.union.members == nil {
				s.errorf(t.union.pos, "%s has no members: mark its event types %s response (or response=error), or list them with members=", name, directive)
			}
			continue
		}
		if pos, ok := s.topLevel[u.typesFunc]; ok {
			s.errorf(pos, "%s is declared here, but mire-eventgen generates a function of that name for the union %s", u.typesFunc, name)
		}
		for _, m := range u.members {
			for _, method := range methods {
				sl := seal{m, method}
				if _, ok := s.methods[m][method]; !ok && !slices.Contains(seals, sl) {
					seals = append(seals, sl) // a member of two unions sealed alike gets one method
				}
			}
		}
		unions = append(unions, u)
	}
	slices.SortFunc(seals, func(a, b seal) int {
		return strings.Compare(a.typeName+"."+a.method, b.typeName+"."+b.method)
	})
	return unions, seals
}

// checkInterface reports whether t can be a union of responses: a
// non-generic interface type that is an IntoResponse and holds values (has
// no type elements). It returns the union's seal methods.
func (s *scan) checkInterface(t *typeDecl) (seals []string, ok bool) {
	spec := t.spec
	name := spec.Name.Name
	iface, isInterface := spec.Type.(*ast.InterfaceType)
	switch {
	case name == "_":
		s.errorf(spec.Name.Pos(), "the blank type cannot be a union")
		return nil, false
	case spec.Assign.IsValid():
		s.errorf(spec.Name.Pos(), "%s is an alias; declare the union as an interface type, type %s interface{...}", name, name)
		return nil, false
	case spec.TypeParams != nil:
		s.errorf(spec.Name.Pos(), "%s is generic; a union of responses must not have type parameters", name)
		return nil, false
	case !isInterface:
		s.errorf(spec.Name.Pos(), "%s is marked %s but is not an interface type: a union of responses is declared as type %s interface{ core.IntoResponse; is%s() }, and its members are marked %s response",
			name, unionDirective, name, name, directive)
		return nil, false
	}
	typeElements := false
	for _, f := range iface.Methods.List {
		if len(f.Names) == 0 {
			switch x := f.Type.(type) {
			case *ast.BinaryExpr, *ast.UnaryExpr: // A | B, ~string
				typeElements = true
			case *ast.Ident:
				if local := s.types[x.Name]; local != nil {
					_, isInterface := local.spec.Type.(*ast.InterfaceType)
					typeElements = typeElements || !isInterface
				}
			}
			continue
		}
	}
	if typeElements {
		s.errorf(spec.Name.Pos(), "%s has type elements (such as A | B): such an interface is only a constraint and cannot hold a reply; embed core.IntoResponse instead, and mark the members %s response or list them with members=",
			name, directive)
		return nil, false
	}
	if !s.hasIntoResponse(t, make(map[string]bool)) {
		s.errorf(spec.Name.Pos(), "%s must embed core.IntoResponse, so that its members answer sagas and a saga can await it", name)
		return nil, false
	}
	return s.seals(t, make(map[string]bool)), true
}

// seals returns the seal methods of the interface t: its unexported methods
// without parameters or results, and those of the interfaces of the package
// it embeds.
func (s *scan) seals(t *typeDecl, seen map[string]bool) []string {
	iface, ok := t.spec.Type.(*ast.InterfaceType)
	if !ok || seen[t.spec.Name.Name] {
		return nil
	}
	seen[t.spec.Name.Name] = true
	var seals []string
	for _, f := range iface.Methods.List {
		if x, ok := f.Type.(*ast.Ident); ok && len(f.Names) == 0 && s.types[x.Name] != nil {
			seals = append(seals, s.seals(s.types[x.Name], seen)...)
			continue
		}
		ft, _ := f.Type.(*ast.FuncType)
		for _, n := range f.Names {
			if !n.IsExported() && ft != nil && ft.TypeParams == nil && ft.Params.NumFields() == 0 && ft.Results.NumFields() == 0 {
				seals = append(seals, n.Name)
			}
		}
	}
	return seals
}

// hasIntoResponse reports whether the interface t has an IntoResponse
// method, or might have one through an interface the generator cannot see
// (the generated code then asserts it at compile time).
func (s *scan) hasIntoResponse(t *typeDecl, seen map[string]bool) bool {
	iface, ok := t.spec.Type.(*ast.InterfaceType)
	if !ok || seen[t.spec.Name.Name] {
		return false
	}
	seen[t.spec.Name.Name] = true
	for _, f := range iface.Methods.List {
		for _, n := range f.Names {
			if n.Name == "IntoResponse" {
				return true
			}
		}
		if len(f.Names) > 0 {
			continue
		}
		switch x := f.Type.(type) {
		case *ast.SelectorExpr:
			pkg, ok := x.X.(*ast.Ident)
			if !ok || pkg.Name != t.coreName || x.Sel.Name == "IntoResponse" {
				return true // core.IntoResponse, or another package's interface
			}
		case *ast.Ident:
			if local := s.types[x.Name]; local != nil && s.hasIntoResponse(local, seen) {
				return true
			}
			if t.coreName == "." && x.Name == "IntoResponse" {
				return true
			}
		default:
			return true // an instantiated generic interface, say
		}
	}
	return false
}
