"""Trains an AS-VAE model from gin files.

  python tools/train.py --gin_file=gin/mnist.gin \
      --gin_param="dataset.local_dir='../shared/data/mnist'" --model_dir=runs/mnist

Rerunning the same command resumes from the latest complete checkpoint in --model_dir
(also after the process was killed). Exit code 0 on success; 2 with one line
`asvae_tf: error: ...` on stderr for bad input (model_dir left untouched) or when training
diverged past its rollback budget (train.max_rollbacks). --strategy=multi_worker reads
TF_CONFIG (see docs/training.md, "Fault tolerance and multi-worker training").
"""

from asvae_tf import cli

cli.define_train_flags()


def main(argv):
  del argv
  return cli.train_main()


def run():
  """Console script `asvae-train` (setup.py entry point); tools/train.py calls it too."""
  cli.main(main)


if __name__ == "__main__":
  run()
