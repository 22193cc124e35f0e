"""What happens to the model's rows: pooling, Matryoshka cut and L2 normalisation (``pooling``),
rerank scores (``rerank``). Pure numpy."""
