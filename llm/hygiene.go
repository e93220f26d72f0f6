package llm

import (
	"bytes"
	"encoding/json"
	"strings"
)

// bannedParams are request-body fields that would redirect a call, supply or steal its
// credentials, or change how it is priced. They are refused unless the caller's key allows
// client-side credentials. (LiteLLM's banned request-body params plus its credential and
// pricing params.)
var bannedParams = map[string]bool{
	"api_base": true, "base_url": true, "api_key": true, "api_version": true, "organization": true,
	"user_config": true, "custom_llm_provider": true, "azure_ad_token": true, "azure_ad_token_provider": true,
	"extra_headers": true, "headers": true, "deployment_url": true, "s3_endpoint_url": true,
	"sagemaker_base_url": true, "aws_access_key_id": true, "aws_secret_access_key": true,
	"aws_session_token": true, "aws_region_name": true, "aws_profile_name": true, "aws_role_name": true,
	"aws_session_name": true, "aws_web_identity_token": true, "aws_sts_endpoint": true,
	"aws_bedrock_runtime_endpoint": true, "aws_external_id": true, "vertex_credentials": true,
	"vertex_project": true, "vertex_location": true, "vertex_ai_project": true, "vertex_ai_location": true,
	"vertex_ai_credentials": true, "input_cost_per_token": true, "output_cost_per_token": true,
	"input_cost_per_second": true, "output_cost_per_second": true, "input_cost_per_image": true,
	"output_cost_per_image": true, "input_cost_per_character": true, "output_cost_per_character": true,
	"cost_per_query": true, "langfuse_host": true, "langfuse_public_key": true, "langfuse_secret_key": true,
	"langfuse_secret": true, "langsmith_api_key": true, "langsmith_base_url": true,
	"posthog_api_url": true, "posthog_api_key": true, "wandb_api_key": true, "humanloop_api_key": true,
	"arize_api_key": true, "braintrust_api_key": true, "datadog_api_key": true, "gcs_bucket_name": true,
}

// nestedContainers are body fields whose contents reach providers or callbacks as
// parameters; banned names are refused inside them at any depth, and a container sent as
// a JSON string is parsed first.
var nestedContainers = map[string]bool{
	"metadata": true, "litellm_metadata": true, "litellm_embedding_config": true, "extra_body": true,
	"litellm_params": true,
}

// maxHygieneDepth bounds how deep nested containers are walked. Deeper bodies are refused.
const maxHygieneDepth = 16

// checkBody refuses a body carrying a banned parameter at its top level or anywhere inside
// a nested container. It returns the path of the first offending field ("api_base",
// "metadata.api_key"), or "" when the body is clean.
func checkBody(body *reqBody) string {
	for _, f := range body.fields {
		name := f.name
		if hasUpper(name) {
			name = bytes.ToLower(name)
		}
		if bannedParams[string(name)] {
			return string(f.name)
		}
		if nestedContainers[string(name)] {
			if p := walkNested(f.val, string(f.name), 1); p != "" {
				return p
			}
		}
	}
	return ""
}

// hasUpper reports whether lower-casing b could change it: it has an upper-case ASCII
// letter or a non-ASCII byte.
func hasUpper(b []byte) bool {
	for _, c := range b {
		if 'A' <= c && c <= 'Z' || c >= 0x80 {
			return true
		}
	}
	return false
}

// walkNested walks a container value: an object (banned names refused at any depth), an
// array of such values, or a string holding JSON of either.
func walkNested(v json.RawMessage, path string, depth int) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return ""
	}
	if depth > maxHygieneDepth {
		return path
	}
	switch v[0] {
	case '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return ""
		}
		t := strings.TrimSpace(s)
		if len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(t)) {
			return walkNested(json.RawMessage(t), path, depth+1)
		}
	case '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(v, &m) != nil {
			return ""
		}
		for k, e := range m {
			if bannedParams[strings.ToLower(k)] {
				return path + "." + k
			}
			if p := walkNested(e, path+"."+k, depth+1); p != "" {
				return p
			}
		}
	case '[':
		var a []json.RawMessage
		if json.Unmarshal(v, &a) != nil {
			return ""
		}
		for _, e := range a {
			if p := walkNested(e, path+"[]", depth+1); p != "" {
				return p
			}
		}
	}
	return ""
}
