package service

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// Launchd is the spec as a launchd property list, for a daemon in
// /Library/LaunchDaemons. launchd has no sandbox or readiness protocol:
// Sandbox and Notify do not apply. (Written with fmt, as Systemd is.)
func Launchd(s Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>%s</string>
	<key>ProgramArguments</key>
	<array>
`, xmlText(s.Label()))
	for _, a := range s.Args {
		fmt.Fprintf(&b, "\t\t<string>%s</string>\n", xmlText(a))
	}
	b.WriteString(`	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
`)
	// KeepAlive true restarts the program whenever it ends; SuccessfulExit
	// false only when it fails, as systemd's Restart=on-failure.
	if s.Restart == "always" {
		b.WriteString("\t<true/>\n")
	} else {
		b.WriteString("\t<dict>\n\t\t<key>SuccessfulExit</key>\n\t\t<false/>\n\t</dict>\n")
	}
	fmt.Fprintf(&b, "\t<key>ThrottleInterval</key>\n\t<integer>%d</integer>\n", seconds(s.RestartDelay))
	if s.LogPath != "" {
		p := xmlText(s.LogPath)
		fmt.Fprintf(&b, "\t<key>StandardOutPath</key>\n\t<string>%s</string>\n\t<key>StandardErrorPath</key>\n\t<string>%s</string>\n", p, p)
	}
	b.WriteString("</dict>\n</plist>\n")
	return b.String()
}

// xmlText escapes s for an XML element, &, <, > and line breaks included.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}
