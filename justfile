# wire's recipes. Each wraps a plain command that the README gives too.

version := `git describe --tags --always --dirty 2>/dev/null || echo devel`
ldflags := "-s -w -X main.version=" + version

# Build the static binary ./wire.
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "{{ldflags}}" -o wire .

# dist/ gets an archive per platform, install.sh and SHA256SUMS, and
# Formula/wire.rb is rewritten for them. E.g. just release -version 1.2.0
# Build the release: the same commit gives the same bytes.
release *args:
	go run ./release {{args}}

# What each module adds to the release binary.
sizes:
	go run ./release -sizes

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
	go test ./relay -run '^$' -fuzz FuzzParse -fuzztime {{time}}
	go test ./event -run '^$' -fuzz FuzzParse -fuzztime {{time}}
	go test ./resolver -run '^$' -fuzz FuzzHandle -fuzztime {{time}}
	go test ./policy -run '^$' -fuzz FuzzParse -fuzztime {{time}}
	go test ./policy -run '^$' -fuzz FuzzEvaluate -fuzztime {{time}}
	go test ./filter -run '^$' -fuzz FuzzInbound -fuzztime {{time}}

# Root; needs iperf3 (apt-get install iperf3). E.g. just bench -t 10
# Measure throughput, join and propagation times and memory in the lab.
bench *args:
	go run ./lab/bench {{args}}

# Not root; loopback only; two CPUs. E.g. just bench-scale -n 1000,5000 -duration 30s
# Measure the coordination server with thousands of simulated nodes.
bench-scale *args:
	go run ./lab/scale {{args}}

# What CI runs.
ci:
	bash .ci/run

# Run a coordination server with state in ./state.
server: build
	./wire server --state-dir ./state
