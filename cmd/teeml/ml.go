package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/teeml/teeml/internal/atomicfile"
	"github.com/teeml/teeml/internal/progress"
	"github.com/teeml/teeml/ml"
	"github.com/teeml/teeml/ml/datasets"
	"github.com/teeml/teeml/ml/job"
	"github.com/teeml/teeml/sealed"
)

func newDatasetsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "datasets", Short: "List and export the datasets teeml ships or reads"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Show every dataset: name, shape, task, licence, source",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROWS\tFEATURES\tTASK\tCLASSES\tLICENCE\tSOURCE")
			for _, in := range datasets.List() {
				classes := "-"
				if in.NumClasses > 0 {
					classes = strconv.Itoa(in.NumClasses)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\n", in.Name, in.Rows, in.Features, in.Task, classes, in.Licence, in.Source)
			}
			return tw.Flush()
		},
	})
	var name, split, out string
	var seed int64
	var testFraction float64
	export := &cobra.Command{
		Use:   "export",
		Short: "Write a dataset split, preprocessed as for training, as CSV (features..., label)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := job.Prepare(name, testFraction, seed)
			if err != nil {
				return err
			}
			var ds *datasets.Dataset
			switch split {
			case "train":
				ds = data.Train
			case "test":
				ds = data.Test
			default:
				return fmt.Errorf("datasets export: split %q: want train or test", split)
			}
			write := func(w io.Writer) error { return writeDatasetCSV(w, ds) }
			if out == "" || out == "-" {
				return write(cmd.OutOrStdout())
			}
			return atomicfile.WriteFile(out, 0o644, write)
		},
	}
	export.Flags().StringVar(&name, "dataset", "", "dataset name (see teeml datasets list)")
	export.Flags().StringVar(&split, "split", "train", "train or test")
	export.Flags().StringVarP(&out, "out", "o", "", "output CSV file (default stdout)")
	export.Flags().Int64Var(&seed, "seed", 1, "split seed (as teeml train --seed)")
	export.Flags().Float64Var(&testFraction, "test-fraction", job.DefaultTestFraction, "held-out fraction")
	_ = export.MarkFlagRequired("dataset")
	cmd.AddCommand(export)
	return cmd
}

func writeDatasetCSV(w io.Writer, ds *datasets.Dataset) error {
	cw := csv.NewWriter(w)
	header := make([]string, 0, ds.D+1)
	for _, c := range ds.Columns {
		header = append(header, c.Name)
	}
	header = append(header, "label")
	if err := cw.Write(header); err != nil {
		return err
	}
	row := make([]string, ds.D+1)
	for i := 0; i < ds.N; i++ {
		for j, v := range ds.Row(i) {
			row[j] = strconv.FormatFloat(float64(v), 'g', -1, 32)
		}
		row[ds.D] = strconv.FormatFloat(float64(ds.Y[i]), 'g', -1, 32)
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func newTrainCmd() *cobra.Command {
	var o job.TrainOptions
	var threads int
	var c job.ClassicalOptions // rf, gbdt, kmeans (see classicalFlags)
	var task string
	var k keyFlags
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a model locally on a dataset and report test metrics",
		Long: "Train a model on the training split of a dataset, print per-epoch loss and test metrics,\n" +
			"and end with test_accuracy=… (classification) or test_rmse=… (regression).\n" +
			"Models: " + fmt.Sprint(ml.Kinds()) + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			keyed := k.kms != "" || k.keyFile != ""
			if job.IsClassical(o.Model) {
				c.Dataset, c.Model, c.LR, c.Seed, c.TestFraction, c.Out, c.Threads = o.Dataset, o.Model, o.LR, o.Seed, o.TestFraction, o.Out, threads
				c.Output = cmd.OutOrStdout()
				switch {
				case c.Input != "" && o.Dataset != "":
					return fmt.Errorf("train: give --input or --dataset, not both")
				case c.Input == "" && o.Dataset == "":
					return fmt.Errorf("train: give --dataset NAME or --input FILE.csv")
				}
				switch datasets.Task(task) {
				case datasets.Classification, datasets.Regression:
					c.Task = datasets.Task(task)
				default:
					return fmt.Errorf("train: --task %q: want classification or regression", task)
				}
				if keyed {
					ks, err := k.source(cmd)
					if err != nil {
						return fmt.Errorf("train: %w", err)
					}
					defer k.close()
					c.Keys = ks
					if o.Out != "" || c.Importance != "" {
						if c.KeyID, err = k.defaultKeyID(ks); err != nil {
							return fmt.Errorf("train: sealing the outputs: %w", err)
						}
					}
				}
				return job.TrainClassical(cmd.Context(), c)
			}
			switch {
			case o.Dataset == "":
				return fmt.Errorf("train: --dataset is required for model %q", o.Model)
			case c.Input != "" || keyed:
				return fmt.Errorf("train: --input, --kms and --key-file are for rf, gbdt and kmeans, not %q (seal neural weights with teeml data encrypt)", o.Model)
			}
			if threads > 0 {
				ml.SetThreads(threads)
			}
			o.Output = cmd.OutOrStdout()
			o.Progress = cmd.ErrOrStderr()
			o.ShowProgress = progress.IsTerminal(os.Stderr)
			_, err := job.Train(cmd.Context(), o)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dataset, "dataset", "", "dataset name (see teeml datasets list)")
	f.StringVar(&o.Model, "model", "", "model kind: logreg, linreg, mlp, cnn, widedeep; rf, gbdt, kmeans")
	f.IntVar(&o.Epochs, "epochs", 0, "epochs (0: the model's default)")
	f.IntVar(&o.BatchSize, "batch", 0, "batch size (0: the model's default)")
	f.Float64Var(&o.LR, "lr", 0, "learning rate (0: the model's default)")
	f.StringVar(&o.Optimizer, "optimizer", "", "adam or sgd (default adam)")
	f.Int64Var(&o.Seed, "seed", 1, "seed for initialisation, shuffling and the train/test split")
	f.Float64Var(&o.TestFraction, "test-fraction", job.DefaultTestFraction, "held-out fraction (ignored by mnist/fashion_mnist, which keep their official split)")
	f.StringVar(&o.Out, "out", "", "write the trained weights to this .safetensors file (rf, gbdt: LightGBM model.txt; kmeans: JSON)")
	classicalFlags(cmd, &c)
	f.IntVar(&threads, "threads", 0, "compute threads (0: all cores)")
	f.StringVar(&c.Input, "input", "", "rf, gbdt, kmeans: train on this CSV (features..., label column) instead of --dataset; may be sealed (--kms/--key-file)")
	f.StringVar(&c.Importance, "importance", "", "rf, gbdt: write feature importances (CSV feature,gain,splits; sealed with --kms/--key-file) to this file")
	f.StringVar(&c.Label, "label", "label", "with --input: the label column")
	f.StringVar(&task, "task", string(datasets.Classification), "with --input: classification or regression")
	k.register(cmd, "rf, gbdt, kmeans: key ID to seal --out under (default: the key file's only key)")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}

func newEvalCmd() *cobra.Command {
	var o job.EvalOptions
	var k keyFlags
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate saved weights on the held-out split they were trained against",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if k.kms != "" || k.keyFile != "" {
				ks, err := k.source(cmd)
				if err != nil {
					return err
				}
				defer k.close()
				o.Keys, o.Context = ks, cmd.Context()
			}
			text, err := job.EvalText(o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), text)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Weights, "weights", "", "weights file written by teeml train --out (model.txt: rf, gbdt)")
	cmd.Flags().StringVar(&o.Dataset, "dataset", "", "dataset name")
	cmd.Flags().StringVar(&o.Model, "model", "", "expected model kind (checked against the file)")
	k.register(cmd, "")
	_ = cmd.MarkFlagRequired("weights")
	_ = cmd.MarkFlagRequired("dataset")
	return cmd
}

func newPredictCmd() *cobra.Command {
	var weights, dataset, split, input, out string
	k := keyFlags{bannerToStderr: true}
	cmd := &cobra.Command{
		Use:   "predict",
		Short: "Predict with saved weights on a dataset split or a CSV file; writes CSV",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ks sealed.KeySource
			if k.kms != "" || k.keyFile != "" {
				var err error
				if ks, err = k.source(cmd); err != nil {
					return err
				}
				defer k.close()
			}
			p, err := job.OpenPredictor(cmd.Context(), weights, ks)
			if err != nil {
				return err
			}
			in := job.PredictInput{Dataset: dataset, Split: split}
			switch {
			case input != "" && dataset != "":
				return fmt.Errorf("predict: give --input or --dataset, not both")
			case input != "":
				b, err := job.ReadMaybeSealed(cmd.Context(), input, "input", ks)
				if err != nil {
					return fmt.Errorf("predict: %w", err)
				}
				in.CSV, in.Source = bytes.NewReader(b), input
			case dataset == "":
				return fmt.Errorf("predict: give --input FILE.csv or --dataset NAME")
			}
			// Predictions are computed before the output file is created:
			// a refused input leaves nothing behind.
			var buf bytes.Buffer
			if err := p.Predict(&buf, in); err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			return atomicfile.WriteFile(out, 0o644, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err })
		},
	}
	f := cmd.Flags()
	f.StringVar(&weights, "weights", "", "model file: teeml train --out (safetensors, model.txt, k-means JSON), a LightGBM model.txt or an XGBoost binary model; sealed files with --kms")
	f.StringVar(&dataset, "dataset", "", "predict on this dataset's split")
	f.StringVar(&split, "split", "test", "with --dataset: test, train or all")
	f.StringVar(&input, "input", "", "CSV file with a header naming the feature columns (optional id column); may be sealed")
	f.StringVarP(&out, "out", "o", "", "output CSV (default stdout)")
	k.register(cmd, "")
	_ = cmd.MarkFlagRequired("weights")
	return cmd
}
