"""Zero-shot classification: no training at all, only the embeddings of short class descriptions.

    predicted class = argmax_c cos(e(text), e(description_c))

With unit-length description vectors d_c as the rows of a head's weight (bias 0), the head's
logits are e . d_c = |e| cos(e, d_c): the same argmax. So a zero-shot classifier is a
SequenceClassifier whose head was written, not learned, and it saves, loads and classifies
like every other method.
"""
import numpy as np

from minilm.autograd import no_grad
from minilm.transfer.classifier import masked_mean

# WN-noun-10's classes described in a few words each, written from WordNet's lexicographer file
# descriptions (lexnames(5WN)); compared against each other on the training split only.
WN_NOUN10_DESCRIPTIONS = {
    "noun.artifact": "a man-made object, tool, device, building or structure",
    "noun.person": "a person: someone who does something, a kind of human being",
    "noun.plant": "a plant, tree, shrub, flower or herb",
    "noun.animal": "an animal, bird, fish, insect or mammal",
    "noun.act": "an act or action: something people do, an activity",
    "noun.communication": "communication: language, speech, writing, a message or a text",
    "noun.state": "a state or condition, such as an illness or a situation",
    "noun.location": "a place, region, area, city or country",
    "noun.attribute": "an attribute or quality of something or someone",
    "noun.substance": "a substance, material, chemical compound or element",
}


def describe_classes(classes, descriptions=None):
    """The description of each class: from `descriptions` (a dict), the WN-noun-10 table, or the
    class name itself with its "noun." style prefix and underscores removed."""
    table = dict(WN_NOUN10_DESCRIPTIONS, **(descriptions or {}))
    return [table.get(c, str(c).split(".")[-1].replace("_", " ")) for c in classes]


def zero_shot_head(classifier, tokenizer, classes, descriptions=None, max_length=64):
    """Write the unit-length embeddings of the class descriptions into classifier.head (in place)."""
    texts = describe_classes(classes, descriptions)
    inputs = tokenizer(texts, padding="longest", truncation=True, max_length=max_length)
    was_training = classifier.training
    classifier.eval()
    with no_grad():
        hidden = classifier.encoder(inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        d = masked_mean(hidden, inputs["attention_mask"]).numpy()                # (C, H)
    classifier.train(was_training)
    classifier.head.weight.data[...] = d / np.linalg.norm(d, axis=1, keepdims=True)
    classifier.head.bias.data[...] = 0.0
    return texts
