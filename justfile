# wire's recipes. Each wraps a plain command that the README gives too.

version := `git describe --tags --always --dirty 2>/dev/null || echo devel`
ldflags := "-s -w -X main.version=" + version

# Build the static binary ./wire.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "{{ldflags}}" -o wire .

# Run the tests (the README's test command).
test:
	go test -count=1 ./...

# Tests with the race detector (needs cgo).
race:
	CGO_ENABLED=1 go test -race ./...

# gofmt and go vet, for every release target.
lint:
	test -z "$(gofmt -l $(git ls-files '*.go'))"
	for t in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do GOOS=${t%/*} GOARCH=${t#*/} go vet ./... || exit 1; done

# Fuzz every parser for a while each.
fuzz time="30s":
	go test ./server -run '^$' -fuzz FuzzParseRegister -fuzztime {{time}}
	go test ./server -run '^$' -fuzz FuzzParsePunch -fuzztime {{time}}
	go test ./server -run '^$' -fuzz FuzzParseSeedState -fuzztime {{time}}
	go test ./stun -run '^$' -fuzz FuzzParseBindingRequest -fuzztime {{time}}
	go test ./stun -run '^$' -fuzz FuzzParseResponse -fuzztime {{time}}

# Measure throughput, join and propagation times and memory in the network
# lab (root; needs iperf3: apt-get install iperf3). E.g. just bench -t 10
bench *args:
	go run ./lab/bench {{args}}

# What CI runs.
ci:
	bash .ci/run

# Run a coordination server with state in ./state.
server: build
	./wire server --state-dir ./state
