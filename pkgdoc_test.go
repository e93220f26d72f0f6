package toolgate_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOnePackageComment checks that every package has exactly one package comment.
func TestOnePackageComment(t *testing.T) {
	dirs := map[string]int{}
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if _, ok := dirs[dir]; !ok {
			dirs[dir] = 0
		}
		if f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "Package ") || f.Doc != nil && f.Name.Name == "main" && strings.HasPrefix(f.Doc.Text(), "Toolgate") || f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "This file") {
			if !strings.HasPrefix(f.Doc.Text(), "This file") {
				dirs[dir]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, n := range dirs {
		if dir == "." {
			continue
		}
		if n != 1 {
			t.Errorf("%s has %d package comments, want exactly 1", dir, n)
		}
	}
}
