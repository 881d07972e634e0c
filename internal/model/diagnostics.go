package model

import (
	"errors"
	"strings"
)

// Severity says whether a diagnostic stops the input from being used.
type Severity int

const (
	// Warning: the input is used, minus what the warning names.
	Warning Severity = iota
	// Error: the input is invalid.
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Diagnostic reports a problem with an input: where it is (file, object,
// field) and what is wrong.
type Diagnostic struct {
	Severity Severity
	File     string // file or other origin, e.g. "cluster1/helloworld.yaml"
	Object   string // e.g. "Service sample/helloworld" or "network network2"
	Field    string // e.g. "spec.ports[0].port"
	Message  string
}

func (d Diagnostic) String() string {
	var parts []string
	for _, p := range []string{d.File, d.Object, d.Field} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	parts = append(parts, d.Message)
	return strings.Join(parts, ": ")
}

// Diagnostics is a list of problems found in some input.
type Diagnostics []Diagnostic

// AddError appends an error diagnostic.
func (ds *Diagnostics) AddError(file, object, field, msg string) {
	*ds = append(*ds, Diagnostic{Severity: Error, File: file, Object: object, Field: field, Message: msg})
}

// AddWarning appends a warning diagnostic.
func (ds *Diagnostics) AddWarning(file, object, field, msg string) {
	*ds = append(*ds, Diagnostic{Severity: Warning, File: file, Object: object, Field: field, Message: msg})
}

// Errors returns only the error diagnostics.
func (ds Diagnostics) Errors() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == Error {
			out = append(out, d)
		}
	}
	return out
}

// Warnings returns only the warning diagnostics.
func (ds Diagnostics) Warnings() Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == Warning {
			out = append(out, d)
		}
	}
	return out
}

// Err joins the error diagnostics into one error, or returns nil if there are
// none.
func (ds Diagnostics) Err() error {
	var errs []error
	for _, d := range ds.Errors() {
		errs = append(errs, errors.New(d.String()))
	}
	return errors.Join(errs...)
}
