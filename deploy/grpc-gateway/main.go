// Command fleetq-gateway is grpc-gateway (v1, as Debian packages it: 1.6.4) in front of a
// FLEET-Q pod: the same REST routes, status codes, JSON and error body as the pod's own
// gateway, from the proto's google.api.http rules. build.sh generates fleetq/v1 and builds
// it offline in GOPATH mode; tests/grpc_gateway replays the REST contract through it.
//
// What FLEET-Q needs beyond a stock grpc-gateway, and where it is done here:
//   - Idempotency-Key reaches the servicer as `idempotency-key` metadata (headerMatcher);
//   - success codes other than 200 (201 on submit, 503 on an unhealthy /health) come as
//     `x-http-code` header metadata and become the HTTP status (httpCodeFromMetadata);
//   - errors answer the contract's body {detail, error_type, timestamp, path} (errorBody);
//   - a stream that fails before its first message answers that error body too, not
//     grpc-gateway's {"error": {...}} line (streamErrorsAsContractBody);
//   - presence fields (a oneof of one field in the proto) are null while unset, and unknown
//     JSON fields are refused, as the pod's gateway does (contractJSON).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/golang/protobuf/jsonpb"
	"github.com/golang/protobuf/proto"
	"github.com/grpc-ecosystem/grpc-gateway/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fleetqv1 "fleetq/v1"
)

const httpCodeKey = "x-http-code"

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "HTTP address to serve")
	backend := flag.String("backend", "127.0.0.1:50051", "a FLEET-Q pod's gRPC address")
	flag.Parse()

	runtime.HTTPError = errorBody
	runtime.OtherErrorHandler = otherErrorBody
	mux := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithForwardResponseOption(httpCodeFromMetadata),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &contractJSON{
			JSONPb: runtime.JSONPb{OrigName: true, EmitDefaults: true},
		}),
	)
	opts := []grpc.DialOption{grpc.WithInsecure()}
	if err := fleetqv1.RegisterFleetQServiceHandlerFromEndpoint(context.Background(), mux, *backend, opts); err != nil {
		log.Fatalf("register: %v", err)
	}
	log.Printf("fleetq-gateway on %s -> %s", *listen, *backend)
	log.Fatal(http.ListenAndServe(*listen, streamErrorsAsContractBody(mux)))
}

// headerMatcher passes Idempotency-Key on as metadata; other headers as grpc-gateway does.
func headerMatcher(key string) (string, bool) {
	if key == "Idempotency-Key" {
		return "idempotency-key", true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// httpCodeFromMetadata turns the servicer's `x-http-code` header metadata into the status,
// and keeps it out of the response headers.
func httpCodeFromMetadata(ctx context.Context, w http.ResponseWriter, _ proto.Message) error {
	md, ok := runtime.ServerMetadataFromContext(ctx)
	if !ok {
		return nil
	}
	values := md.HeaderMD.Get(httpCodeKey)
	if len(values) == 0 {
		return nil
	}
	w.Header().Del("Grpc-Metadata-X-Http-Code")
	if code, err := strconv.Atoi(values[0]); err == nil && code >= 200 && code < 600 {
		w.WriteHeader(code)
	}
	return nil
}

// The gRPC code to HTTP table of FLEET-Q's gateway (fleetq_server/gateway/http_errors.py).
var httpErrors = map[codes.Code]struct {
	status    int
	errorType string
}{
	codes.InvalidArgument:    {400, "validation_error"},
	codes.FailedPrecondition: {400, "validation_error"},
	codes.NotFound:           {404, "not_found"},
	codes.PermissionDenied:   {403, "permission_denied"},
	codes.Unauthenticated:    {401, "unauthenticated"},
	codes.Aborted:            {409, "conflict"},
	codes.AlreadyExists:      {409, "conflict"},
	codes.ResourceExhausted:  {429, "resource_exhausted"},
	codes.Unavailable:        {500, "database_error"},
	codes.Unimplemented:      {501, "not_implemented"},
	codes.DeadlineExceeded:   {504, "timeout"},
}

// errorBody answers a failed call with the contract's error body.
func errorBody(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	s, ok := status.FromError(err)
	if !ok {
		s = status.New(codes.Unknown, err.Error())
	}
	mapped, known := httpErrors[s.Code()]
	if !known {
		mapped.status, mapped.errorType = 500, "internal_error"
	}
	writeError(w, r, mapped.status, mapped.errorType, s.Message())
}

// otherErrorBody answers what the mux refuses before any call: unknown paths and methods.
func otherErrorBody(w http.ResponseWriter, r *http.Request, msg string, code int) {
	errorType := map[int]string{404: "not_found", 405: "method_not_allowed"}[code]
	if errorType == "" {
		errorType = "validation_error"
	}
	writeError(w, r, code, errorType, msg)
}

func writeError(w http.ResponseWriter, r *http.Request, code int, errorType, detail string) {
	body, _ := json.Marshal(map[string]string{
		"detail":     detail,
		"error_type": errorType,
		"timestamp":  time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
		"path":       r.URL.Path,
	})
	w.Header().Del("Trailer")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(body)
}

// streamErrorsAsContractBody makes a stream that fails before its first message (WatchStep
// of an unknown step) answer like any other call; after a first message the failure stays
// the {"error": {...}} line both gateways write.
func streamErrorsAsContractBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&streamErrorWriter{ResponseWriter: w, request: r}, r)
	})
}

type streamErrorWriter struct {
	http.ResponseWriter
	request *http.Request
	held    int // a stream's error status, held until its body shows the error
}

func (s *streamErrorWriter) WriteHeader(code int) {
	if code >= 400 && s.Header().Get("Transfer-Encoding") == "chunked" {
		s.held = code
		return
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *streamErrorWriter) Write(body []byte) (int, error) {
	if s.held == 0 {
		return s.ResponseWriter.Write(body)
	}
	code := s.held
	s.held = 0
	var line struct {
		Error *struct {
			GrpcCode int32  `json:"grpc_code"`
			Message  string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &line) == nil && line.Error != nil {
		s.Header().Del("Transfer-Encoding")
		err := status.Error(codes.Code(line.Error.GrpcCode), line.Error.Message)
		errorBody(s.request.Context(), nil, nil, s.ResponseWriter, s.request, err)
		return len(body), nil
	}
	s.ResponseWriter.WriteHeader(code)
	return s.ResponseWriter.Write(body)
}

// Flush keeps the writer a Flusher: grpc-gateway streams only through one.
func (s *streamErrorWriter) Flush() {
	if flusher, ok := s.ResponseWriter.(http.Flusher); ok {
		flusher.Flush()
	}
}

// contractJSON is grpc-gateway's JSONPb (original names, unpopulated fields emitted) with
// two changes: a presence field left unset is null rather than absent (jsonpb leaves
// every unset oneof out), and a body with an unknown field is refused.
type contractJSON struct {
	runtime.JSONPb
}

func (m *contractJSON) Marshal(v interface{}) ([]byte, error) {
	out, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	switch v := v.(type) {
	case proto.Message:
		return withNulls(out, v)
	case map[string]proto.Message: // a stream's line, {"result": message}
		var line map[string]json.RawMessage
		if err := json.Unmarshal(out, &line); err != nil {
			return out, nil
		}
		for key, message := range v {
			if line[key], err = withNulls(line[key], message); err != nil {
				return nil, err
			}
		}
		return json.Marshal(line)
	}
	return out, nil
}

func (m *contractJSON) Unmarshal(data []byte, v interface{}) error {
	if message, ok := v.(proto.Message); ok {
		return jsonpb.UnmarshalString(string(data), message)
	}
	return m.JSONPb.Unmarshal(data, v)
}

func (m *contractJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v interface{}) error {
		if message, ok := v.(proto.Message); ok {
			return (&jsonpb.Unmarshaler{}).Unmarshal(r, message)
		}
		return m.JSONPb.NewDecoder(r).Decode(v)
	})
}

// withNulls adds `"name": null` to a message's JSON for each presence field left unset.
func withNulls(out []byte, message proto.Message) ([]byte, error) {
	names := unsetPresenceFields(message)
	if len(names) == 0 {
		return out, nil
	}
	var object map[string]json.RawMessage
	if err := json.Unmarshal(out, &object); err != nil {
		return out, nil
	}
	for _, name := range names {
		if _, ok := object[name]; !ok {
			object[name] = json.RawMessage("null")
		}
	}
	return json.Marshal(object)
}

// unsetPresenceFields names the message's unset fields that are alone in their oneof.
func unsetPresenceFields(message proto.Message) []string {
	value := reflect.ValueOf(message)
	if value.Kind() != reflect.Ptr || value.IsNil() || value.Elem().Kind() != reflect.Struct {
		return nil
	}
	structValue := value.Elem()
	members := map[int][]string{}
	for _, oneof := range proto.GetProperties(structValue.Type()).OneofTypes {
		members[oneof.Field] = append(members[oneof.Field], oneof.Prop.OrigName)
	}
	var names []string
	for field, fields := range members {
		if len(fields) == 1 && structValue.Field(field).IsNil() {
			names = append(names, fields[0])
		}
	}
	return names
}
