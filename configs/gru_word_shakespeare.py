"""Word-level GRU LM on Tiny Shakespeare, trained with sparse (lazy) Adam.

  python -m rnnlab.main --config=configs/gru_word_shakespeare.py --workdir=runs/gru_word
  python -m rnnlab.main --config=configs/gru_word_shakespeare.py:adam --workdir=runs/gru_word_adam
  python -m rnnlab.main --config=configs/gru_word_shakespeare.py:runlocal --workdir=/tmp/gru_word

Same text split as the char LM (first 90% of the characters train, last 10%
validation); words, punctuation marks and newlines are tokens
(rnnlab/data/text.py split_words): 264k training tokens. The vocabulary is
the 5,000 most frequent training words plus <unk> (7.6% of validation
tokens are <unk>). 2 x 256 GRU, 128-dim embedding, dropout 0.3, 20 random
windows of 35 words per step (Zaremba et al.'s PTB batch), 1,500 steps
(about 4 epochs). The 5,000-way readout is most of the compute. optim.name="sparse_adam": the embedding table
gets PyTorch SparseAdam's lazy update (rows of words absent from the batch
keep their values and moments), the rest plain Adam. The arg "adam" uses
dense Adam everywhere, for comparison. Early stopping keeps the best
validation step in <workdir>/best/.

Measured (2026-11-26, this 2-core CPU shared with other jobs, jax 0.10.2,
the first two commands above with RNNLAB_DATA_DIR=../shared/data; 4.54M
parameters, 2.56M of them the readout): validation perplexity 56.89 per
word (4.0412 nats) after 1,500 steps with sparse_adam, 11 min 50 s for the
whole command; dense Adam (":adam") 56.41 (4.0326) in 9 min 26 s. By step
(sparse / dense): 81.05 / 80.63 (250), 59.43 / 58.88 (1,000). The lazy
update leaves absent rows' moments undecayed, which cost a little here; it
is not faster on the CPU, where the update still touches the whole table
(masked), and 1.6k vs 2.0k tokens/s is within this shared host's noise.
"""
from rnnlab import base_config
from rnnlab import recipes


def get_config(arg: str = ""):
  arg = recipes.parse_arg(arg, runlocal=False, adam=False)
  c = base_config.get_config()
  c.task = "word_lm"
  c.text.vocab_size = 5000
  c.model.cell = "gru"
  c.model.hidden_size, c.model.num_layers = 256, 2
  c.model.embed_dim = 128
  c.model.dropout_rate = 0.3
  c.train.batch_size, c.train.seq_len = 20, 35
  c.train.steps = 1500
  c.train.log_every = 50
  c.train.eval_every = c.train.checkpoint_every = 250
  c.train.sample_every = 1000
  c.train.patience = 3
  c.optim.name = "adam" if arg.adam else "sparse_adam"
  c.optim.learning_rate = 2e-3
  c.eval.seq_len = 64
  c.sample.length = 100
  if arg.runlocal:
    recipes.make_runlocal(c)
    c.text.vocab_size = 500
  return c
