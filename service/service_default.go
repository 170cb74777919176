//go:build !linux && !darwin

package service

import "context"

// Manager is the service manager this package drives here: none.
const Manager = ""

// Available says whether a service manager this package drives runs here.
func Available() bool { return false }

// Path is the file the service manager reads the spec from: none here.
func (s Spec) Path() string { return "" }

// Logs is the command that follows the service's output: none here.
func Logs(Spec) string { return "" }

// Install fails: there is no service manager to install into.
func Install(context.Context, Spec) error { return ErrUnavailable }

// Stop does nothing: there is no service manager to stop.
func Stop(context.Context, string) bool { return false }

// LastLog is what the service last logged: nothing, with no service.
func LastLog(context.Context, Spec) string { return "" }
