"""The LSTM forerunners of pretrain-then-fine-tune, kept outside the transformer core (STYLE.md):
ELMo's bidirectional LM with its scalar mix (Peters et al. 2018) and ULMFiT's AWD-LSTM
(Merity et al. 2017; Howard & Ruder 2018). ``lmforge.lstm.checkpoint`` saves and loads them."""
