package lab

import (
	"errors"
	"fmt"
	"time"
)

// abortError ends a Poll early.
type abortError struct{ error }

func (e abortError) Unwrap() error { return e.error }

// Abort wraps err so that Poll returns it at once instead of trying again:
// for a failure that waiting will not mend, such as the process under
// test having exited.
func Abort(err error) error { return abortError{err} }

// Poll calls f every interval until it returns nil or an error made by
// Abort, or until timeout has passed; it returns f's last error.
func Poll(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		var abort abortError
		if err == nil || errors.As(err, &abort) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}
