"""Branch and bound: keep splitting until every subdomain is proven, a counterexample is found,
or time runs out. ``input_split`` branches on input dimensions (low-dimensional inputs);
``activation_split`` branches on unstable ReLUs with beta-CROWN bounds."""
