package main

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// tracingWanted reports whether OpenTelemetry tracing is configured: "otel" in
// litellm_settings.callbacks (LiteLLM's spelling) or an OTLP endpoint in the environment.
// OTEL_SDK_DISABLED=true turns it off either way.
func tracingWanted(litellm map[string]any, getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		return true
	}
	for _, key := range []string{"callbacks", "success_callback"} {
		switch v := litellm[key].(type) {
		case []any:
			for _, c := range v {
				if s, _ := c.(string); s == "otel" {
					return true
				}
			}
		case string:
			if v == "otel" {
				return true
			}
		}
	}
	return false
}

// newTracerProvider returns a provider that batches spans to the OTLP/HTTP endpoint the
// standard OTEL_EXPORTER_OTLP_* variables name (default http://localhost:4318). It makes
// no network calls; spans are sent in the background and flushed by Shutdown.
func newTracerProvider(ctx context.Context) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override these.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "toolgate"), attribute.String("service.version", version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
