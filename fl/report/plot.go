package report

import (
	"fmt"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot size: 12 × 5 inches at 96 dpi = 1152 × 480 pixels.
const (
	PlotWidth  = 12 * vg.Inch
	PlotHeight = 5 * vg.Inch
	PlotDPI    = 96
)

// series is one line of a plot: y per round, NaN where missing.
type series struct {
	name string
	ys   func(RoundRow) float64
}

// PNG draws the score and the loss per round side by side.
func (s *Summary) PNG(w io.Writer) error {
	score := s.Score
	if score == "" {
		score = "score"
	}
	left, err := s.panel(fmt.Sprintf("%s per round", score), score, []series{
		{"validation: round's input model, collaborators' data", func(r RoundRow) float64 { return r.ValScore }},
		{"validation: locally trained models", func(r RoundRow) float64 { return r.LocalScore }},
		{"held-out test: round's aggregate", func(r RoundRow) float64 { return r.TestScore }},
	})
	if err != nil {
		return err
	}
	right, err := s.panel("loss per round", "loss", []series{
		{"validation: round's input model, collaborators' data", func(r RoundRow) float64 { return r.ValLoss }},
		{"validation: locally trained models", func(r RoundRow) float64 { return r.LocalLoss }},
		{"held-out test: round's aggregate", func(r RoundRow) float64 { return r.TestLoss }},
	})
	if err != nil {
		return err
	}
	img := vgimg.NewWith(vgimg.UseWH(PlotWidth, PlotHeight), vgimg.UseDPI(PlotDPI))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	cs := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(cs[0][0])
	right.Draw(cs[0][1])
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

func (s *Summary) panel(title, ylabel string, ss []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "round"
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.X.Tick.Marker = roundTicks{}
	drawn := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, se := range ss {
		var xy plotter.XYs
		for _, r := range s.Rounds {
			if y := se.ys(r); !math.IsNaN(y) && !math.IsInf(y, 0) {
				xy = append(xy, plotter.XY{X: float64(r.Round), Y: y})
			}
		}
		if len(xy) == 0 {
			continue
		}
		for _, v := range xy {
			lo, hi = math.Min(lo, v.Y), math.Max(hi, v.Y)
		}
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return nil, fmt.Errorf("report: plot %s: %w", se.name, err)
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		pts.Color = plotutil.Color(i)
		pts.Shape = plotutil.Shape(i)
		p.Add(l, pts)
		p.Legend.Add(se.name, l, pts)
		drawn++
	}
	if drawn == 0 {
		p.Title.Text += " (no data recorded)"
	} else {
		// Headroom above the data for the legend (drawn inside, top right).
		span := hi - lo
		if span <= 0 {
			span = math.Max(math.Abs(hi), 1) * 0.1
		}
		p.Y.Min = lo - 0.05*span
		p.Y.Max = hi + 0.15*span*float64(drawn+1)
	}
	if len(s.Rounds) > 0 {
		p.X.Min = float64(s.Rounds[0].Round) - 0.5
		p.X.Max = float64(s.Rounds[len(s.Rounds)-1].Round) + 0.5
	}
	return p, nil
}

// roundTicks labels integer rounds only (at most ~12 labels).
type roundTicks struct{}

func (roundTicks) Ticks(min, max float64) []plot.Tick {
	lo, hi := math.Ceil(min), math.Floor(max)
	step := math.Max(1, math.Ceil((hi-lo+1)/12))
	var ts []plot.Tick
	for x := lo; x <= hi; x += step {
		ts = append(ts, plot.Tick{Value: x, Label: fmt.Sprintf("%d", int(x))})
	}
	return ts
}
