package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// schemaOptions make an event body (json.RawMessage, any JSON value) any
// value in a schema, not the byte array its Go type would say.
var schemaOptions = &jsonschema.ForOptions{TypeSchemas: map[reflect.Type]*jsonschema.Schema{
	reflect.TypeFor[json.RawMessage](): {},
}}

// addTool adds a typed tool and keeps its resolved input schema, so that
// bad arguments are refused as a protocol error (invalid params) rather
// than a tool result: the client sent a call the tool cannot take.
func addTool[In, Out any](s *Server, t *sdk.Tool, h sdk.ToolHandlerFor[In, Out]) {
	schema, err := jsonschema.For[In](schemaOptions)
	if err != nil {
		panic(fmt.Sprintf("tool %s: %v", t.Name, err))
	}
	if t.OutputSchema, err = jsonschema.For[Out](schemaOptions); err != nil {
		panic(fmt.Sprintf("tool %s: %v", t.Name, err))
	}
	resolved, err := schema.Resolve(nil)
	if err != nil {
		panic(fmt.Sprintf("tool %s: %v", t.Name, err))
	}
	t.InputSchema = schema
	s.inputs[t.Name] = resolved
	sdk.AddTool(s.srv, t, h)
}

// validateArgs is middleware that checks tools/call arguments against
// the tool's input schema.
func (s *Server) validateArgs(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		if method != "tools/call" {
			return next(ctx, method, req)
		}
		p, ok := req.GetParams().(*sdk.CallToolParamsRaw)
		if !ok {
			return next(ctx, method, req)
		}
		resolved, ok := s.inputs[p.Name]
		if !ok {
			return next(ctx, method, req) // the SDK answers unknown tools
		}
		var args any = map[string]any{}
		if len(p.Arguments) > 0 && string(p.Arguments) != "null" {
			if err := json.Unmarshal(p.Arguments, &args); err != nil {
				return nil, invalidParams(p.Name, err)
			}
		}
		if err := resolved.Validate(args); err != nil {
			return nil, invalidParams(p.Name, err)
		}
		return next(ctx, method, req)
	}
}

func invalidParams(tool string, err error) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("invalid arguments for %s: %v", tool, err)}
}
