package monitor

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot/vg"
)

// Bounds of what one web request may ask.
const (
	maxGraphInstances = 10
	maxQueryLen       = 4096
)

// WebHandler serves the pages: test type, then instances by their end
// points and characteristics, then graphs rendered here as SVG.
func (m *Monitor) WebHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", m.webTypes)
	mux.HandleFunc("GET /type", m.webType)
	mux.HandleFunc("GET /graph", m.webGraph)
	return http.MaxBytesHandler(mux, 1<<10)
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · probe monitor</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#24313f;color:#fff;padding:10px 24px}
header a{color:#cfe3ff;text-decoration:none}
main{padding:16px 24px;max-width:1400px}
h1{font-size:22px;margin:8px 0 16px}
table{border-collapse:collapse;background:#fff;margin-bottom:16px}
th,td{padding:6px 12px;border-bottom:1px solid #e3e6ea;text-align:left}
th{background:#eef1f4;font-weight:600}
.muted{color:#66707a}
.cards{display:flex;gap:16px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px 18px;min-width:180px;text-decoration:none;color:inherit}
.card b{font-size:18px;display:block;color:#1f5fa8}
fieldset{border:1px solid #dde1e6;background:#fff;border-radius:6px;margin:0 0 14px;padding:10px 16px}
legend{font-weight:600}
label{margin-right:16px;white-space:nowrap}
button{font:inherit;padding:6px 18px;background:#1f5fa8;color:#fff;border:0;border-radius:4px;cursor:pointer}
nav.scales a{margin-right:6px;padding:3px 10px;border:1px solid #c5ccd3;border-radius:4px;text-decoration:none;color:#1f5fa8;background:#fff}
nav.scales a.on{background:#1f5fa8;color:#fff;border-color:#1f5fa8}
figure{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:0 12px 16px 0;padding:8px;display:inline-block;vertical-align:top}
figure a{display:block}
figure a svg,figure > svg{display:block;max-width:100%;height:auto}
figcaption{font-size:13px;color:#66707a;padding:4px 6px 0}
ul.legend{list-style:none;margin:4px 6px 0;padding:0;columns:2;font-size:13px}
ul.legend li{white-space:nowrap}
ul.legend svg{display:inline-block;vertical-align:middle}
.state-failed,.state-not_started{color:#b3261e}
.err{color:#b3261e}
</style></head><body>
<header><a href="/">probe monitor</a>{{range .Crumbs}} › <a href="{{.URL}}">{{.Name}}</a>{{end}}</header><main>
{{end}}

{{define "foot"}}</main></body></html>{{end}}

{{define "types"}}{{template "head" .}}
<h1>Test types</h1>
<div class="cards">
{{range .Types}}<a class="card" href="/type?type={{.Name}}"><b>{{.Name}}</b>{{.Instances}} instance{{if ne .Instances 1}}s{{end}}<br><span class="muted">{{.Chars}}</span></a>
{{else}}<p>No test instances in the archive yet.</p>{{end}}
</div>
{{template "foot"}}{{end}}

{{define "type"}}{{template "head" .}}
<h1>{{.Type}} tests</h1>
<form action="/graph" method="get">
<input type="hidden" name="type" value="{{.Type}}">
<fieldset><legend>Instances (up to {{.MaxInstances}} in one graph)</legend>
<table><tr><th></th><th>instance</th><th>from → to</th><th>class</th><th>runs</th><th>last run</th><th>parameters</th></tr>
{{range $i, $in := .Instances}}<tr><td><input type="checkbox" name="i" value="{{$in.Name}}" id="i{{$i}}"{{if lt $i 3}} checked{{end}}></td>
<td><label for="i{{$i}}">{{$in.Name}}</label></td><td>{{$in.Source}} → {{$in.Destination}}</td><td>{{$in.Class}}</td><td>{{$in.Runs}}</td>
<td>{{if $in.LastRun.IsZero}}–{{else}}{{$in.LastRun.Format "2006-01-02 15:04:05"}} <span class="state-{{$in.LastState}}">{{$in.LastState}}</span>{{end}}</td>
<td class="muted">{{$in.Params}}</td></tr>
{{end}}</table></fieldset>
<fieldset><legend>Characteristics</legend>
{{range $i, $c := .Chars}}<label><input type="checkbox" name="c" value="{{$c.Name}}"{{if eq $i 0}} checked{{end}}> {{$c.Name}} <span class="muted">({{$c.Unit}})</span></label>{{end}}
</fieldset>
<fieldset><legend>Time scale</legend>
{{range .Scales}}<label><input type="radio" name="scale" value="{{.}}"{{if eq . "day"}} checked{{end}}> last {{.}}</label>{{end}}
<label><input type="checkbox" name="cut" value="1"> leave out values above the 95th percentile</label>
</fieldset>
<button type="submit">Show graphs</button>
</form>
{{template "foot"}}{{end}}

{{define "graph"}}{{template "head" .}}
<h1>{{.Type}}: {{range $k, $v := .Instances}}{{if $k}}, {{end}}{{$v}}{{end}}</h1>
<nav class="scales">{{range .ScaleLinks}}<a href="{{.URL}}"{{if .On}} class="on"{{end}}>{{.Name}}</a>{{end}}
<a href="{{.CutLink}}">{{if .Cut}}show every value{{else}}leave out values above p95{{end}}</a>
{{if .Big}}<a href="{{.Back}}">all graphs</a>{{end}}</nav>
<p class="muted">{{.Note}}</p>
{{range .Graphs}}<figure data-unit="{{.Unit}}" data-series="{{.Data}}">
{{if $.Big}}{{.SVG}}{{else}}<a href="{{.Enlarge}}" title="enlarge">{{.SVG}}</a>{{end}}
<ul class="legend">{{range .Legend}}<li><svg width="30" height="10"><line x1="0" y1="5" x2="30" y2="5" stroke="{{.Color}}" stroke-width="2.5"{{if .Dash}} stroke-dasharray="{{.Dash}}"{{end}}/></svg> {{.Name}}{{if .Note}} <span class="muted">({{.Note}})</span>{{end}}</li>{{end}}</ul>
<figcaption>{{.Caption}}{{if not $.Big}} · click the graph to enlarge it{{end}}</figcaption></figure>
{{end}}
{{template "foot"}}{{end}}
`))

type crumb struct{ Name, URL string }

type page struct {
	Title  string
	Crumbs []crumb
}

func (m *Monitor) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		m.log.Warn("web page", "page", name, "err", err)
	}
}

func (m *Monitor) webTypes(w http.ResponseWriter, r *http.Request) {
	type card struct {
		Name      string
		Instances int
		Chars     string
	}
	all, err := m.arc.Instances(r.Context(), 0, true)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var cards []card
	for _, t := range Types() {
		n := 0
		for _, in := range all {
			if in.Type == t {
				n++
			}
		}
		if n == 0 {
			continue
		}
		var names []string
		for _, c := range t.Characteristics() {
			names = append(names, c.Name)
		}
		cards = append(cards, card{t.String(), n, strings.Join(names, ", ")})
	}
	m.render(w, "types", struct {
		page
		Types []card
	}{page{Title: "test types"}, cards})
}

func (m *Monitor) webType(w http.ResponseWriter, r *http.Request) {
	t, err := ParseTestType(r.URL.Query().Get("type"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ins, err := m.arc.Instances(r.Context(), t, false)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	m.render(w, "type", struct {
		page
		Type         string
		Instances    []Instance
		Chars        []Characteristic
		Scales       []string
		MaxInstances int
	}{page{Title: t.String(), Crumbs: []crumb{{t.String(), "/type?type=" + t.String()}}}, t.String(), ins, t.Characteristics(),
		scaleNames[:], maxGraphInstances})
}

// graphRequest is a /graph query, checked.
type graphRequest struct {
	Type      TestType
	Instances []string
	Chars     []Characteristic
	Scale     Scale
	Cut       bool
	Unit      string // "" every unit; else the one graph, enlarged
}

func (m *Monitor) parseGraph(r *http.Request) (graphRequest, error) {
	var g graphRequest
	if len(r.URL.RawQuery) > maxQueryLen {
		return g, fmt.Errorf("query of %d bytes: at most %d", len(r.URL.RawQuery), maxQueryLen)
	}
	q := r.URL.Query()
	var err error
	if g.Type, err = ParseTestType(q.Get("type")); err != nil {
		return g, err
	}
	if g.Scale, err = ParseScale(q.Get("scale")); err != nil {
		return g, err
	}
	g.Cut = q.Get("cut") == "1"
	g.Unit = q.Get("unit")
	known, err := m.arc.Instances(r.Context(), g.Type, false)
	if err != nil {
		return g, err
	}
	for _, name := range q["i"] {
		if !slices.ContainsFunc(known, func(in Instance) bool { return in.Name == name }) {
			return g, fmt.Errorf("no %s instance %q", g.Type, truncate(name, 64))
		}
		if !slices.Contains(g.Instances, name) {
			g.Instances = append(g.Instances, name)
		}
	}
	switch {
	case len(g.Instances) == 0:
		return g, fmt.Errorf("choose at least one instance")
	case len(g.Instances) > maxGraphInstances:
		return g, fmt.Errorf("%d instances: at most %d in one graph", len(g.Instances), maxGraphInstances)
	}
	for _, name := range q["c"] {
		c, ok := g.Type.Characteristic(name)
		if !ok {
			return g, fmt.Errorf("%s has no characteristic %q", g.Type, truncate(name, 64))
		}
		if !slices.Contains(g.Chars, c) {
			g.Chars = append(g.Chars, c)
		}
	}
	if len(g.Chars) == 0 {
		return g, fmt.Errorf("choose at least one characteristic")
	}
	return g, nil
}

// url is the query of g with changes applied.
func (g graphRequest) url(change func(url.Values)) string {
	v := url.Values{"type": {g.Type.String()}, "scale": {g.Scale.String()}, "i": g.Instances}
	for _, c := range g.Chars {
		v.Add("c", c.Name)
	}
	if g.Cut {
		v.Set("cut", "1")
	}
	if g.Unit != "" {
		v.Set("unit", g.Unit)
	}
	if change != nil {
		change(v)
	}
	return "/graph?" + v.Encode()
}

type graphView struct {
	Unit    string
	SVG     template.HTML
	Data    string // the plotted series as JSON, for checks
	Enlarge string
	Caption string
	Legend  []legendItem
}

func (m *Monitor) webGraph(w http.ResponseWriter, r *http.Request) {
	g, err := m.parseGraph(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	from := now.Add(-g.Scale.Span())
	var units []Unit
	for _, c := range g.Chars {
		if !slices.Contains(units, c.Unit) && (g.Unit == "" || g.Unit == c.Unit.String()) {
			units = append(units, c.Unit)
		}
	}
	if len(units) == 0 {
		http.Error(w, fmt.Sprintf("no chosen characteristic is in %q", truncate(g.Unit, 32)), http.StatusBadRequest)
		return
	}
	width, height := 15*vg.Centimeter, 8*vg.Centimeter
	if g.Unit != "" {
		width, height = 30*vg.Centimeter, 15*vg.Centimeter
	}
	var graphs []graphView
	var source string
	for _, u := range units {
		var series []Series
		points := 0
		for _, c := range g.Chars {
			if c.Unit != u {
				continue
			}
			for _, in := range g.Instances {
				s, err := m.arc.query(r.Context(), g.Type, in, c.Name, g.Scale, now)
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				if g.Cut {
					s.cutAbove95()
				}
				source = s.Source
				points += len(s.V)
				series = append(series, s)
			}
		}
		var names []string
		for _, c := range g.Chars {
			if c.Unit == u {
				names = append(names, c.Name)
			}
		}
		title := fmt.Sprintf("%s, last %s", strings.Join(names, ", "), g.Scale)
		svg, legend, err := renderSVG(series, u, from, now, width, height, title)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		data, _ := json.Marshal(series)
		graphs = append(graphs, graphView{Unit: u.String(), SVG: template.HTML(svg), Data: string(data), Legend: legend,
			Enlarge: g.url(func(v url.Values) { v.Set("unit", u.String()) }),
			Caption: fmt.Sprintf("%d points", points)})
	}
	note := "each point is one run's value"
	if source != "raw" {
		note = "each point is the mean of the runs in one " + periodName(source) + " aggregate"
	}
	if g.Cut {
		note += "; values above each line's 95th percentile are left out"
	}
	type link struct {
		Name, URL string
		On        bool
	}
	var scales []link
	for s := range numScales {
		scales = append(scales, link{"last " + s.String(), g.url(func(v url.Values) { v.Set("scale", s.String()) }), s == g.Scale})
	}
	typeURL := "/type?type=" + g.Type.String()
	m.render(w, "graph", struct {
		page
		Type       string
		Instances  []string
		Graphs     []graphView
		ScaleLinks []link
		Cut, Big   bool
		CutLink    string
		Back       string
		Note       string
	}{page{Title: g.Type.String() + " graphs", Crumbs: []crumb{{g.Type.String(), typeURL}, {"graphs", g.url(nil)}}},
		g.Type.String(), g.Instances, graphs, scales, g.Cut, g.Unit != "",
		g.url(func(v url.Values) {
			if g.Cut {
				v.Del("cut")
			} else {
				v.Set("cut", "1")
			}
		}),
		g.url(func(v url.Values) { v.Del("unit") }), note})
}

// periodName says an aggregation period as people do: "5-minute", "1-hour".
func periodName(s string) string {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return s
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d-day", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%d-hour", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d-minute", d/time.Minute)
	}
	return s
}
