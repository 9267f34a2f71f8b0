// Command kstatus prints the verdict of sigs.k8s.io/cli-utils' kstatus (the library Flux, kpt and
// Config Sync compute health with) for Kubernetes objects, so tests can check an object's status
// the way those GitOps tools read it, with the same code rather than a reimplementation.
//
// Input on stdin: one object as JSON or YAML, a JSON array of objects, a List (kind: List,
// items), or a multi-document YAML stream. Output on stdout: one JSON verdict
// {"status": "...", "message": "..."} for a single object, or a JSON array of verdicts, in input
// order, when several objects came in. An object kstatus cannot judge gets status "Unknown" and the
// error as its message, as kstatus' own poller reports it; unreadable input exits with code 2.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	objects, several, err := decode(in)
	if err != nil {
		fail("%v", err)
	}
	verdicts := make([]verdict, 0, len(objects))
	for _, obj := range objects {
		verdicts = append(verdicts, judge(obj))
	}
	enc := json.NewEncoder(os.Stdout)
	if several {
		err = enc.Encode(verdicts)
	} else {
		err = enc.Encode(verdicts[0])
	}
	if err != nil {
		fail("writing stdout: %v", err)
	}
}

func judge(obj map[string]interface{}) verdict {
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return verdict{Status: status.UnknownStatus.String(), Message: err.Error()}
	}
	return verdict{Status: res.Status.String(), Message: res.Message}
}

// decode returns the objects in the input and whether the caller sent a collection, so a
// one-element array still answers with an array.
func decode(in []byte) ([]map[string]interface{}, bool, error) {
	trimmed := bytes.TrimSpace(in)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var list []map[string]interface{}
		if err := utiljson.Unmarshal(trimmed, &list); err != nil {
			return nil, false, fmt.Errorf("decoding JSON array: %w", err)
		}
		return list, true, nil
	}
	// YAMLOrJSONDecoder reads JSON as is and splits YAML on document separators.
	dec := yamlutil.NewYAMLOrJSONDecoder(bytes.NewReader(in), 4096)
	var docs []map[string]interface{}
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			break
		}
		var doc map[string]interface{}
		if err == nil && len(raw) > 0 {
			// kstatus reads generations as int64; encoding/json would hand it float64.
			err = utiljson.Unmarshal(raw, &doc)
		}
		if err != nil {
			return nil, false, fmt.Errorf("decoding object %d: %w", len(docs)+1, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) == 0 {
		return nil, false, fmt.Errorf("no object on stdin")
	}
	if len(docs) == 1 && isList(docs[0]) {
		items, _ := docs[0]["items"].([]interface{})
		list := make([]map[string]interface{}, 0, len(items))
		for i, item := range items {
			obj, ok := item.(map[string]interface{})
			if !ok {
				return nil, false, fmt.Errorf("List item %d is not an object", i)
			}
			list = append(list, obj)
		}
		return list, true, nil
	}
	return docs, len(docs) > 1, nil
}

// isList matches kubectl's `kind: List` and typed lists such as ModelDeploymentList.
func isList(obj map[string]interface{}) bool {
	kind, _ := obj["kind"].(string)
	_, hasItems := obj["items"]
	return hasItems && len(kind) >= 4 && kind[len(kind)-4:] == "List"
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}
