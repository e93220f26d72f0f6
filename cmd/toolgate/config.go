package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/toolgate/toolgate/gateway"
	"github.com/toolgate/toolgate/llm"
	"github.com/toolgate/toolgate/store"
)

// Config is everything toolgate serve needs. Precedence: defaults < config file <
// TOOLGATE_* (and the few LiteLLM-compatible) environment variables < flags.
type Config struct {
	Host       string // --host, TOOLGATE_HOST; default 0.0.0.0
	Port       int    // --port, PORT or TOOLGATE_PORT; default 4000
	ConfigFile string // --config, TOOLGATE_CONFIG

	MasterKey   string // general_settings.master_key, TOOLGATE_MASTER_KEY; empty: generated on first start
	DatabaseURL string // general_settings.database_url, DATABASE_URL; default sqlite:toolgate.db
	SaltKey     string // general_settings.salt_key, TOOLGATE_SALT_KEY (or LITELLM_SALT_KEY)

	RequireAuthForMetrics bool          // general_settings.require_auth_for_metrics_endpoint; default true
	AllowPrivateUpstreams bool          // general_settings.allow_private_upstreams; default false
	MaxRequestBytes       int64         // general_settings.max_request_size_mb; default 4 MiB
	AllowedOrigins        []string      // general_settings.allowed_origins
	ShutdownGrace         time.Duration // general_settings.shutdown_grace, TOOLGATE_SHUTDOWN_GRACE; default 15s
	SpendBatchWindow      time.Duration // general_settings.proxy_batch_write_at (seconds); default 1s; 0: off
	LogLevel              string        // TOOLGATE_LOG_LEVEL: debug, info, warn, error; default info
	LogFlushInterval      time.Duration // general_settings.log_flush_interval, TOOLGATE_LOG_FLUSH_INTERVAL; default 100ms; 0: every line at once
	Tracing               bool          // litellm_settings.callbacks: [otel] or OTEL_EXPORTER_OTLP_ENDPOINT; default off

	OAuth             gateway.OAuthConfig // general_settings: public_url, authorization_server, jwt_auth, ...
	TrustForwardedFor bool                // general_settings.use_x_forwarded_for
	TrustedProxies    []netip.Prefix      // general_settings.trusted_proxies (CIDRs)

	MCPServers      []*store.MCPServer // mcp_servers
	ModelList       []map[string]any   // model_list, kept for the LLM routes
	LiteLLMSettings map[string]any     // litellm_settings
	RouterSettings  map[string]any     // router_settings

	// Alerting is general_settings.alerting, LiteLLM's list of alert destinations. Only
	// "webhook" is supported: soft-budget alerts go to WebhookURL unless
	// litellm_settings.budget_alert_webhook is set, which wins. Others are warned about.
	Alerting   []string
	AlertTypes []string // general_settings.alert_types; empty means every type, budget alerts included
	WebhookURL string   // WEBHOOK_URL: where general_settings.alerting: [webhook] sends alerts

	// Environment is the config file's environment_variables section: values for the
	// environment variables toolgate reads (os.environ/NAME references and the variables
	// above) when the process environment does not set them.
	Environment map[string]string

	// Warnings are the config file's ignored keys and other non-fatal findings.
	Warnings []string
}

// withFileEnv returns getenv falling back to env for variables it does not set.
func withFileEnv(getenv func(string) string, env map[string]string) func(string) string {
	if len(env) == 0 {
		return getenv
	}
	return func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return env[name]
	}
}

// defaultConfig returns the defaults.
func defaultConfig() Config {
	return Config{
		Host:                  "0.0.0.0",
		Port:                  4000,
		DatabaseURL:           "sqlite:toolgate.db",
		RequireAuthForMetrics: true,
		MaxRequestBytes:       4 << 20,
		ShutdownGrace:         15 * time.Second,
		SpendBatchWindow:      time.Second,
		LogLevel:              "info",
		LogFlushInterval:      100 * time.Millisecond,
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", c.Port))
	}
	if _, _, err := parseDatabaseURL(c.DatabaseURL); err != nil {
		errs = append(errs, err)
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, errors.New("general_settings.max_request_size_mb must be positive"))
	}
	if c.ShutdownGrace < 0 {
		errs = append(errs, errors.New("shutdown grace must not be negative"))
	}
	if c.LogFlushInterval < 0 || c.LogFlushInterval > time.Minute {
		errs = append(errs, fmt.Errorf("log flush interval %v: want 0 (every line at once) to 1m", c.LogFlushInterval))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level %q must be debug, info, warn or error", c.LogLevel))
	}
	if c.MasterKey != "" && len(c.MasterKey) < 8 {
		errs = append(errs, errors.New("master key must be at least 8 characters"))
	}
	if router := gateway.MergedRouterSettings(c.RouterSettings, c.LiteLLMSettings); len(c.ModelList) > 0 || len(router) > 0 {
		errs = append(errs, validateLLM(c.ModelList, router))
	}
	seen := map[string]bool{}
	for _, s := range c.MCPServers {
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("mcp_servers: %s defined twice", s.Name))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}

// validateLLM checks model_list and router_settings the way the LLM routes will read them.
func validateLLM(modelList []map[string]any, router map[string]any) error {
	models, err := llm.ModelConfigsFromMaps(modelList)
	if err != nil {
		return err
	}
	rs, err := llm.RouterSettingsFromMap(router)
	if err != nil {
		return err
	}
	if err := (llm.Config{Models: models, Router: rs}).Validate(); err != nil {
		return fmt.Errorf("model_list/router_settings: %w", err)
	}
	return nil
}

// loadConfig builds the configuration for serve or migrate from args, the environment and
// the config file.
func loadConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("toolgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", cfg.Host, "address to listen on (env TOOLGATE_HOST)")
	port := fs.Int("port", cfg.Port, "port to listen on (env PORT or TOOLGATE_PORT)")
	file := fs.String("config", "", "YAML config file in LiteLLM's shape (env TOOLGATE_CONFIG)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg.ConfigFile = getenv("TOOLGATE_CONFIG")
	if set["config"] {
		cfg.ConfigFile = *file
	}
	var errs []error
	if cfg.ConfigFile != "" {
		data, err := os.ReadFile(cfg.ConfigFile)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := parseConfigFile(&cfg, data, getenv); err != nil {
			errs = append(errs, err)
		}
		getenv = withFileEnv(getenv, cfg.Environment)
	}
	errs = append(errs, applyEnv(&cfg, getenv))
	errs = append(errs, cfg.applyAlerting())
	cfg.Tracing = tracingWanted(cfg.LiteLLMSettings, getenv)
	if set["host"] {
		cfg.Host = *host
	}
	if set["port"] {
		cfg.Port = *port
	}
	errs = append(errs, cfg.Validate())
	return cfg, errors.Join(errs...)
}

// applyAlerting maps LiteLLM's alert config, general_settings.alerting: [webhook] with the
// URL in WEBHOOK_URL, onto litellm_settings.budget_alert_webhook, which the gateway reads.
// toolgate sends only budget alerts, so the webhook is used unless alert_types leaves
// budget_alerts out. An explicit budget_alert_webhook wins over WEBHOOK_URL: it is
// toolgate's own key, so a config that has it chose it on purpose, and WEBHOOK_URL may be
// in the environment for other programs; the ignored variable is warned about. A
// webhook destination without any URL, or a WEBHOOK_URL that is not an http(s) URL, is an
// error, since alerts would otherwise be dropped without a word. URLs are never echoed:
// webhook URLs often carry their credential.
func (c *Config) applyAlerting() error {
	webhook := false
	for _, a := range c.Alerting {
		if a == "webhook" {
			webhook = true
			continue
		}
		c.Warnings = append(c.Warnings, fmt.Sprintf("config: general_settings.alerting: %q is not supported by toolgate (only webhook, for budget alerts)", a))
	}
	if !webhook {
		return nil
	}
	if len(c.AlertTypes) > 0 && !slices.Contains(c.AlertTypes, "budget_alerts") {
		c.Warnings = append(c.Warnings, "config: general_settings.alerting: webhook sends only budget alerts in toolgate, and general_settings.alert_types leaves budget_alerts out")
		return nil
	}
	explicit, _ := c.LiteLLMSettings["budget_alert_webhook"].(string)
	switch {
	case explicit != "":
		if c.WebhookURL != "" && c.WebhookURL != explicit {
			c.Warnings = append(c.Warnings, "config: litellm_settings.budget_alert_webhook is set, so budget alerts go there and WEBHOOK_URL is not used")
		}
		return nil
	case c.WebhookURL == "":
		return errors.New("config: general_settings.alerting lists webhook but WEBHOOK_URL is not set (nor litellm_settings.budget_alert_webhook)")
	}
	if u, err := url.Parse(c.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("config: WEBHOOK_URL is not an absolute http or https URL")
	}
	if c.LiteLLMSettings == nil {
		c.LiteLLMSettings = map[string]any{}
	}
	c.LiteLLMSettings["budget_alert_webhook"] = c.WebhookURL
	return nil
}

// applyEnv applies the environment variables.
func applyEnv(cfg *Config, getenv func(string) string) error {
	var errs []error
	if v := getenv("TOOLGATE_HOST"); v != "" {
		cfg.Host = v
	}
	for _, name := range []string{"PORT", "TOOLGATE_PORT"} {
		if v := getenv(name); v != "" {
			p, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q is not a port", name, v))
				continue
			}
			cfg.Port = p
		}
	}
	if v := getenv("TOOLGATE_MASTER_KEY"); v != "" {
		cfg.MasterKey = v
	}
	if v := getenv("DATABASE_URL"); v != "" {
		cfg.DatabaseURL = v
	}
	if v := getenv("LITELLM_SALT_KEY"); v != "" {
		cfg.SaltKey = v
	}
	if v := getenv("TOOLGATE_SALT_KEY"); v != "" {
		cfg.SaltKey = v
	}
	if v := getenv("TOOLGATE_SHUTDOWN_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TOOLGATE_SHUTDOWN_GRACE=%q: %v", v, err))
		} else {
			cfg.ShutdownGrace = d
		}
	}
	if v := getenv("TOOLGATE_PUBLIC_URL"); v != "" {
		cfg.OAuth.PublicURL = v
	}
	if v := getenv("WEBHOOK_URL"); v != "" {
		cfg.WebhookURL = v
	}
	if v := getenv("TOOLGATE_LOG_LEVEL"); v != "" {
		cfg.LogLevel = strings.ToLower(v)
	}
	if v := getenv("TOOLGATE_LOG_FLUSH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TOOLGATE_LOG_FLUSH_INTERVAL=%q: %v", v, err))
		} else {
			cfg.LogFlushInterval = d
		}
	}
	return errors.Join(errs...)
}

// oauthSettingKeys are the general_settings keys that gateway.OAuthConfig reads.
var oauthSettingKeys = yamlKeys(reflect.TypeFor[gateway.OAuthConfig]())

// yamlKeys returns the top-level YAML keys of struct type t (inline fields included).
func yamlKeys(t reflect.Type) map[string]bool {
	keys := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
		case name == "" && strings.Contains(opts, "inline"):
			for k := range yamlKeys(f.Type) {
				keys[k] = true
			}
		case name != "":
			keys[name] = true
		}
	}
	return keys
}

// fileConfig is the config file. Unknown top-level and general_settings keys are warned
// about (LiteLLM configs carry many keys toolgate does not use); unknown keys inside an
// mcp_servers entry are errors, because a typo there silently changes what is exposed.
type fileConfig struct {
	GeneralSettings map[string]yaml.Node `yaml:"general_settings"`
	MCPServers      map[string]yaml.Node `yaml:"mcp_servers"`
	ModelList       []map[string]any     `yaml:"model_list"`
	LiteLLMSettings map[string]any       `yaml:"litellm_settings"`
	RouterSettings  map[string]any       `yaml:"router_settings"`
	Other           map[string]yaml.Node `yaml:",inline"`
}

// mcpServerConfig is one mcp_servers entry, in LiteLLM's keys.
type mcpServerConfig struct {
	URL                       string            `yaml:"url"`
	Transport                 string            `yaml:"transport"`
	Description               string            `yaml:"description"`
	Alias                     string            `yaml:"alias"`
	AuthType                  string            `yaml:"auth_type"`
	AuthValue                 string            `yaml:"auth_value"`
	Credentials               *mcpCredentials   `yaml:"credentials"` // auth_value, client_id, client_secret, scopes
	Headers                   map[string]string `yaml:"headers"`     // alias of static_headers
	StaticHeaders             map[string]string `yaml:"static_headers"`
	ExtraHeaders              []string          `yaml:"extra_headers"`
	AllowedTools              []string          `yaml:"allowed_tools"`
	AccessGroups              []string          `yaml:"access_groups"`
	MCPAccessGroups           []string          `yaml:"mcp_access_groups"`
	ToolNameToDisplayName     map[string]string `yaml:"tool_name_to_display_name"`
	ToolNameToDescription     map[string]string `yaml:"tool_name_to_description"`
	AllowAllKeys              bool              `yaml:"allow_all_keys"`
	AvailableOnPublicInternet *bool             `yaml:"available_on_public_internet"`
	AllowKeyless              bool              `yaml:"allow_keyless"`
	SpecVersion               string            `yaml:"spec_version"`
	MCPInfo                   *mcpInfoConfig    `yaml:"mcp_info"`

	// OAuth upstreams (auth_type oauth2); client_id, client_secret and scopes may also be
	// given under credentials, as the API takes them.
	AuthorizationURL       string   `yaml:"authorization_url"`
	TokenURL               string   `yaml:"token_url"`
	RegistrationURL        string   `yaml:"registration_url"`
	OAuth2Flow             string   `yaml:"oauth2_flow"`
	ClientID               string   `yaml:"client_id"`
	ClientSecret           string   `yaml:"client_secret"`
	Scopes                 []string `yaml:"scopes"`
	DelegateAuthToUpstream bool     `yaml:"delegate_auth_to_upstream"`
	OAuthPassthrough       bool     `yaml:"oauth_passthrough"`
}

// mcpCredentials is an mcp_servers entry's credentials block, with the API's keys.
type mcpCredentials struct {
	AuthValue    string   `yaml:"auth_value"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"`
	Scopes       []string `yaml:"scopes"`
}

type mcpInfoConfig struct {
	ServerName        string `yaml:"server_name"`
	Description       string `yaml:"description"`
	LogoURL           string `yaml:"logo_url"`
	MCPServerCostInfo *struct {
		DefaultCostPerQuery    float64            `yaml:"default_cost_per_query"`
		ToolNameToCostPerQuery map[string]float64 `yaml:"tool_name_to_cost_per_query"`
	} `yaml:"mcp_server_cost_info"`
}

// parseConfigFile reads the YAML config into cfg, resolving os.environ/NAME values.
func parseConfigFile(cfg *Config, data []byte, getenv func(string) string) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(root.Content) == 0 {
		return nil // empty file
	}
	var errs []error
	if env := topLevel(&root, "environment_variables"); env != nil {
		resolveEnv(env, getenv, &errs)
		cfg.Environment = nil
		if err := env.Decode(&cfg.Environment); err != nil {
			errs = append(errs, fmt.Errorf("config: environment_variables: want a map of names to values: %v", err))
		}
		getenv = withFileEnv(getenv, cfg.Environment)
	}
	resolveEnv(&root, getenv, &errs)
	var fc fileConfig
	if err := root.Decode(&fc); err != nil {
		return errors.Join(append(errs, fmt.Errorf("config: %w", err))...)
	}
	for _, k := range sortedKeys(fc.Other) {
		switch k {
		case "environment_variables":
		case "callback_settings", "credential_list", "guardrails", "search_tools", "vector_store_registry":
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("config: section %s is not used by toolgate", k))
		default:
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("config: unknown top-level key %s ignored", k))
		}
	}
	gs := fc.GeneralSettings
	oauthKeys := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range sortedKeys(gs) {
		n := gs[k]
		if oauthSettingKeys[k] {
			oauthKeys.Content = append(oauthKeys.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &n)
			continue
		}
		var err error
		switch k {
		case "use_x_forwarded_for":
			err = n.Decode(&cfg.TrustForwardedFor)
		case "trusted_proxies":
			var cidrs []string
			if err = n.Decode(&cidrs); err == nil {
				cfg.TrustedProxies = nil
				for _, c := range cidrs {
					p, perr := netip.ParsePrefix(c)
					if perr != nil {
						if a, aerr := netip.ParseAddr(c); aerr == nil {
							p, perr = a.Prefix(a.BitLen())
						}
					}
					if perr != nil {
						errs = append(errs, fmt.Errorf("config: general_settings.trusted_proxies: %q is not a CIDR or address", c))
						continue
					}
					cfg.TrustedProxies = append(cfg.TrustedProxies, p)
				}
			}
		case "master_key":
			err = n.Decode(&cfg.MasterKey)
		case "database_url":
			err = n.Decode(&cfg.DatabaseURL)
		case "salt_key":
			err = n.Decode(&cfg.SaltKey)
		case "require_auth_for_metrics_endpoint":
			err = n.Decode(&cfg.RequireAuthForMetrics)
		case "allow_private_upstreams":
			err = n.Decode(&cfg.AllowPrivateUpstreams)
		case "allowed_origins":
			err = n.Decode(&cfg.AllowedOrigins)
		case "max_request_size_mb":
			var mb float64
			if err = n.Decode(&mb); err == nil {
				cfg.MaxRequestBytes = int64(mb * (1 << 20))
			}
		case "alerting":
			err = n.Decode(&cfg.Alerting)
		case "alert_types":
			err = n.Decode(&cfg.AlertTypes)
		case "proxy_batch_write_at":
			var secs float64
			if err = n.Decode(&secs); err == nil {
				if secs < 0 || secs > 3600 {
					err = fmt.Errorf("%v seconds: want 0 (off) to 3600", secs)
				}
				cfg.SpendBatchWindow = time.Duration(secs * float64(time.Second))
			}
		case "shutdown_grace":
			var s string
			if err = n.Decode(&s); err == nil {
				cfg.ShutdownGrace, err = time.ParseDuration(s)
			}
		case "log_flush_interval":
			var s string
			if err = n.Decode(&s); err == nil {
				cfg.LogFlushInterval, err = time.ParseDuration(s)
			}
		default:
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("config: general_settings.%s is not used by toolgate", k))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config: general_settings.%s: %v", k, err))
		}
	}
	if len(oauthKeys.Content) > 0 {
		b, err := yaml.Marshal(oauthKeys)
		if err == nil {
			dec := yaml.NewDecoder(bytes.NewReader(b))
			dec.KnownFields(true)
			err = dec.Decode(&cfg.OAuth)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("config: general_settings (oauth): %v", strings.TrimPrefix(err.Error(), "yaml: ")))
		}
	}
	for _, name := range sortedKeys(fc.MCPServers) {
		n := fc.MCPServers[name]
		srv, err := decodeMCPServer(name, &n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cfg.MCPServers = append(cfg.MCPServers, srv)
	}
	cfg.ModelList, cfg.LiteLLMSettings, cfg.RouterSettings = fc.ModelList, fc.LiteLLMSettings, fc.RouterSettings
	return errors.Join(errs...)
}

// decodeMCPServer decodes one mcp_servers entry strictly.
func decodeMCPServer(name string, n *yaml.Node) (*store.MCPServer, error) {
	b, err := yaml.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("config: mcp_servers.%s: %v", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c mcpServerConfig
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: mcp_servers.%s: %v", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	srv := &store.MCPServer{
		Name:                      name,
		Alias:                     c.Alias,
		Description:               c.Description,
		URL:                       c.URL,
		Transport:                 c.Transport,
		AuthType:                  c.AuthType,
		ExtraHeaders:              c.ExtraHeaders,
		StaticHeaders:             c.StaticHeaders,
		AllowedTools:              c.AllowedTools,
		ToolNameToDisplayName:     c.ToolNameToDisplayName,
		ToolNameToDescription:     c.ToolNameToDescription,
		AccessGroups:              append(c.AccessGroups, c.MCPAccessGroups...),
		AllowAllKeys:              c.AllowAllKeys,
		AllowKeyless:              c.AllowKeyless,
		AvailableOnPublicInternet: c.AvailableOnPublicInternet == nil || *c.AvailableOnPublicInternet,
	}
	if len(c.Headers) > 0 {
		if srv.StaticHeaders == nil {
			srv.StaticHeaders = map[string]string{}
		}
		for k, v := range c.Headers {
			srv.StaticHeaders[k] = v
		}
	}
	if c.MCPInfo != nil {
		if srv.Description == "" {
			srv.Description = c.MCPInfo.Description
		}
		if ci := c.MCPInfo.MCPServerCostInfo; ci != nil {
			srv.Cost = store.MCPServerCost{DefaultCostPerQuery: ci.DefaultCostPerQuery, ToolNameToCostPerQuery: ci.ToolNameToCostPerQuery}
		}
	}
	srv.OAuth = store.MCPServerOAuth{ClientID: c.ClientID, AuthorizationURL: c.AuthorizationURL, TokenURL: c.TokenURL,
		RegistrationURL: c.RegistrationURL, Scopes: c.Scopes, GrantType: c.OAuth2Flow,
		Passthrough: c.OAuthPassthrough, DelegateAuthToUpstream: c.DelegateAuthToUpstream}
	switch c.OAuth2Flow {
	case "", "authorization_code", "client_credentials":
	default:
		return nil, fmt.Errorf("config: mcp_servers.%s.oauth2_flow: %q must be authorization_code or client_credentials", name, c.OAuth2Flow)
	}
	creds := map[string]string{}
	if c.ClientSecret != "" {
		creds["client_secret"] = c.ClientSecret
	}
	if cr := c.Credentials; cr != nil {
		if cr.AuthValue != "" {
			creds["auth_value"] = cr.AuthValue
		}
		if cr.ClientSecret != "" {
			creds["client_secret"] = cr.ClientSecret
		}
		if cr.ClientID != "" {
			srv.OAuth.ClientID = cr.ClientID
		}
		if len(cr.Scopes) > 0 {
			srv.OAuth.Scopes = cr.Scopes
		}
	}
	if c.AuthValue != "" {
		creds["auth_value"] = c.AuthValue
	}
	if len(creds) > 0 {
		srv.Credentials, _ = jsonMarshal(creds)
	}
	if srv.URL == "" {
		return nil, fmt.Errorf("config: mcp_servers.%s: url is required", name)
	}
	return srv, nil
}

// topLevel returns the value of the document's top-level key, or nil.
func topLevel(root *yaml.Node, key string) *yaml.Node {
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := root.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		if m[i].Value == key {
			return m[i+1]
		}
	}
	return nil
}

// resolveEnv replaces every scalar "os.environ/NAME" with the environment value, recording
// an error for each unset variable.
func resolveEnv(n *yaml.Node, getenv func(string) string, errs *[]error) {
	if n.Kind == yaml.ScalarNode {
		if name, ok := strings.CutPrefix(n.Value, "os.environ/"); ok {
			v := getenv(name)
			if v == "" {
				*errs = append(*errs, fmt.Errorf("config: line %d: environment variable %s is not set", n.Line, name))
			}
			n.Value, n.Tag, n.Style = v, "!!str", 0
		}
		return
	}
	for _, c := range n.Content {
		resolveEnv(c, getenv, errs)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
