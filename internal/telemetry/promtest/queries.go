package promtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Query is one PromQL expression of the dashboard or the rules, and where it is.
type Query struct {
	// Source names it for a failure message: `dashboard "Jobs in flight" A` or
	// `rule TaskbridgeDLQGrowing`.
	Source string
	// Dashboard is true for a dashboard query (those must return data), false for a
	// rule (an alert's condition is normally empty).
	Dashboard bool
	Expr      string
}

// grafanaMacros are the interval variables Grafana substitutes before it sends a
// query; a plain Prometheus needs a value. The values suit a 1 s scrape.
var grafanaMacros = strings.NewReplacer(
	"$__rate_interval", "1m",
	"$__interval", "15s",
	"$__range", "1h",
)

// Queries reads every query of a Grafana dashboard (panels in rows included) and of a
// Prometheus rule file. Either path may be empty. A panel target without an expr, a
// rule without expr, or a dashboard without any query is an error: the file is not
// what the tests think it is.
func Queries(dashboardPath, rulesPath string) ([]Query, error) {
	var qs []Query
	if dashboardPath != "" {
		d, err := dashboardQueries(dashboardPath)
		if err != nil {
			return nil, err
		}
		qs = append(qs, d...)
	}
	if rulesPath != "" {
		r, err := ruleQueries(rulesPath)
		if err != nil {
			return nil, err
		}
		qs = append(qs, r...)
	}
	return qs, nil
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
		Hide  bool   `json:"hide"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row holds its panels
}

func dashboardQueries(path string) ([]Query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dashboard: %w", err)
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("dashboard %s: %w", path, err)
	}
	var qs []Query
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			if err := walk(p.Panels); err != nil {
				return err
			}
			if p.Type == "row" || p.Type == "text" {
				continue
			}
			if len(p.Targets) == 0 {
				return fmt.Errorf("dashboard %s: panel %q has no query", path, p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					return fmt.Errorf("dashboard %s: panel %q target %s has no expr", path, p.Title, tg.RefID)
				}
				qs = append(qs, Query{Source: fmt.Sprintf("dashboard %q %s", p.Title, tg.RefID), Dashboard: true,
					Expr: grafanaMacros.Replace(tg.Expr)})
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return nil, errors.New("dashboard " + path + " has no queries")
	}
	return qs, nil
}

func ruleQueries(path string) ([]Query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("rules %s: %w", path, err)
	}
	var qs []Query
	for _, g := range f.Groups {
		for i, r := range g.Rules {
			name := r.Alert + r.Record
			if name == "" {
				name = fmt.Sprintf("%s[%d]", g.Name, i)
			}
			if strings.TrimSpace(r.Expr) == "" {
				return nil, fmt.Errorf("rules %s: rule %s has no expr", path, name)
			}
			qs = append(qs, Query{Source: "rule " + name, Expr: r.Expr})
		}
	}
	if len(qs) == 0 {
		return nil, errors.New("rules " + path + " has no rules")
	}
	return qs, nil
}
