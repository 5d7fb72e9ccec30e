package console

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// pageNames are the templates/<name>.html files, each rendered inside layout.html.
var pageNames = []string{"stack", "executions", "execution", "object", "dlqs", "dlq", "message", "confirm", "error"}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"dur": func(d time.Duration) string {
		switch {
		case d <= 0:
			return "—"
		case d < time.Second:
			return d.Round(time.Millisecond).String()
		default:
			return d.Round(time.Second).String()
		}
	},
	"lower": strings.ToLower,
	"offset": func(d time.Duration) string {
		if d < time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(100 * time.Millisecond).String()
	},
	"add": func(a, b int) int { return a + b },
	"bytes": func(n int64) string {
		switch {
		case n < 1024:
			return fmt.Sprintf("%d B", n)
		case n < 1024*1024:
			return fmt.Sprintf("%.1f KiB", float64(n)/1024)
		default:
			return fmt.Sprintf("%.1f MiB", float64(n)/1024/1024)
		}
	},
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}
