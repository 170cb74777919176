package service

import (
	"encoding/xml"
	"strings"
	"text/template"
)

// KeepAlive true restarts the program whenever it ends; SuccessfulExit
// false only when it fails, as systemd's Restart=on-failure.
var launchdTemplate = template.Must(template.New("launchd").Funcs(template.FuncMap{
	"xml": xmlText, "seconds": seconds,
}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{{xml .Label}}</string>
	<key>ProgramArguments</key>
	<array>
{{- range .Args}}
		<string>{{xml .}}</string>
{{- end}}
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
{{- if eq .Restart "always"}}
	<true/>
{{- else}}
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
{{- end}}
	<key>ThrottleInterval</key>
	<integer>{{seconds .RestartDelay}}</integer>
{{- with .LogPath}}
	<key>StandardOutPath</key>
	<string>{{xml .}}</string>
	<key>StandardErrorPath</key>
	<string>{{xml .}}</string>
{{- end}}
</dict>
</plist>
`))

// Launchd is the spec as a launchd property list, for a daemon in
// /Library/LaunchDaemons. launchd has no sandbox or readiness protocol:
// Sandbox and Notify do not apply.
func Launchd(s Spec) string {
	var b strings.Builder
	if err := launchdTemplate.Execute(&b, s); err != nil {
		panic(err) // the template is fixed and its functions cannot fail
	}
	return b.String()
}

// xmlText escapes s for an XML element, &, <, > and line breaks included.
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()
}
