"""`transformers.pipeline` on saved lmforge folders: text-generation for the causal models, and the folders' own
text2text-generation (AE-LLM) and summarization (LatentReasoner) pipelines, which transformers 5 no longer has.

The folders are copies of the golden models (tests/data/golden); every text a pipeline writes is checked against the
committed golden ids' text, with lmforge installed and where it is not (the shared remote-code worker)."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from .conftest import python_without_lmforge
from .golden import PROMPTS, golden_text

QUESTIONS = PROMPTS["ae_llm"]
TEXT_A, TEXT_B = PROMPTS["latent_reasoner"]


@pytest.mark.parametrize("model_type", ["aksis", "char_transformer"])
def test_text_generation_pipeline_writes_the_golden_text(model_type: str, tiny_model_dirs: dict) -> None:
    generator = pipeline("text-generation", model=str(tiny_model_dirs[model_type]), trust_remote_code=True)
    for prompt in PROMPTS[model_type]:
        [answer] = generator(prompt, max_new_tokens=8, do_sample=False)
        assert answer["generated_text"] == prompt + golden_text(model_type, prompt)


def test_ae_llm_text2text_generation_pipeline(tiny_model_dirs: dict) -> None:
    answerer = pipeline("text2text-generation", model=str(tiny_model_dirs["ae_llm"]), trust_remote_code=True)
    assert type(answerer).__name__ == "AELLMText2TextGenerationPipeline"
    for question in QUESTIONS:
        assert answerer(question, max_new_tokens=8) == [{"generated_text": golden_text("ae_llm", question)}]
    batch = answerer(QUESTIONS, max_new_tokens=8)
    assert batch == [[{"generated_text": golden_text("ae_llm", question)}] for question in QUESTIONS]


def test_latent_reasoner_summarization_pipeline_reads_and_writes_with_two_tokenizers(tiny_model_dirs: dict) -> None:
    summarizer = pipeline("summarization", model=str(tiny_model_dirs["latent_reasoner"]), trust_remote_code=True)
    assert type(summarizer).__name__ == "LatentReasonerSummarizationPipeline"
    for text in (TEXT_A, TEXT_B):  # read with the encoder's tokenizer, written in the decoder's words
        assert summarizer(text, max_new_tokens=8) == [{"summary_text": golden_text("latent_reasoner", text)}]
    # alpha 0 decodes from the first text's idea vector alone, alpha 1 from the second's
    for alpha, text in ((0.0, TEXT_A), (1.0, TEXT_B)):
        mixed = summarizer(TEXT_A, interpolate_with=TEXT_B, alpha=alpha, max_new_tokens=8)
        assert mixed == [{"summary_text": golden_text("latent_reasoner", text)}]
    with pytest.raises(ValueError, match="interpolate_with"):
        summarizer(TEXT_A, alpha=0.5)


def test_removed_transformers_task_needs_the_folders_pipeline(tiny_model_dirs: dict, tmp_path: Path) -> None:
    """Without `custom_pipelines` in config.json, transformers 5 refuses text2text-generation: the reason it ships."""
    bare = Path(shutil.copytree(tiny_model_dirs["ae_llm"], tmp_path / "bare"))
    config = json.loads((bare / "config.json").read_text())
    del config["custom_pipelines"]
    (bare / "config.json").write_text(json.dumps(config))
    with pytest.raises(KeyError, match="has been removed"):
        pipeline("text2text-generation", model=str(bare), trust_remote_code=True)


def test_seq2seq_pipelines_work_without_lmforge(tiny_model_dirs: dict, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from transformers import pipeline
        answerer = pipeline("text2text-generation", model={str(tiny_model_dirs["ae_llm"])!r}, trust_remote_code=True)
        summarizer = pipeline(
            "summarization", model={str(tiny_model_dirs["latent_reasoner"])!r}, trust_remote_code=True
        )
        for pipe in (answerer, summarizer):
            assert type(pipe).__module__.startswith("transformers_modules."), type(pipe).__module__
        print(answerer({QUESTIONS[0]!r}, max_new_tokens=8)[0]["generated_text"])
        print(summarizer({TEXT_A!r}, max_new_tokens=8)[0]["summary_text"])
        """
    )
    result = python_without_lmforge(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [golden_text("ae_llm", QUESTIONS[0]), golden_text("latent_reasoner", TEXT_A)]


def test_pipeline_classes_from_lmforge_write_what_the_folders_copies_write(tiny_model_dirs: dict) -> None:
    """The classes in lmforge (what the folders' files are copied from) write the golden text, as the copies do."""
    from lmforge.models.ae_llm.pipeline_ae_llm import AELLMText2TextGenerationPipeline
    from lmforge.models.latent_reasoner.pipeline_latent_reasoner import LatentReasonerSummarizationPipeline

    folder = tiny_model_dirs["ae_llm"]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    answerer = AELLMText2TextGenerationPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    assert answerer(QUESTIONS[1], max_new_tokens=8) == [{"generated_text": golden_text("ae_llm", QUESTIONS[1])}]
    with pytest.raises(TypeError, match="reads text"):
        answerer.preprocess(123)

    folder = tiny_model_dirs["latent_reasoner"]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    summarizer = LatentReasonerSummarizationPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    remote = pipeline("summarization", model=str(folder), trust_remote_code=True)
    kwargs = {"interpolate_with": TEXT_B, "alpha": 0.5, "max_new_tokens": 8}
    assert summarizer(TEXT_A, **kwargs) == remote(TEXT_A, **kwargs)  # a mix: no golden text, the two copies agree
    assert summarizer(TEXT_B, max_new_tokens=8) == [{"summary_text": golden_text("latent_reasoner", TEXT_B)}]


def test_answer_question_is_the_folders_pipeline_even_without_lmforge(tiny_model_dirs: dict, tmp_path: Path) -> None:
    """A folder has one text path: `AELLMForConditionalGeneration.answer_question` runs the folder's own
    text2text-generation pipeline, which `save_pretrained` alone copies next to the model code."""
    folder = tmp_path / "plain"
    AutoModelForSeq2SeqLM.from_pretrained(tiny_model_dirs["ae_llm"]).save_pretrained(folder)  # no add_remote_code
    AutoTokenizer.from_pretrained(tiny_model_dirs["ae_llm"]).save_pretrained(folder)
    assert (folder / "pipeline_ae_llm.py").is_file()
    script = textwrap.dedent(
        f"""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        model = AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
        print(model.answer_question({QUESTIONS[0]!r}, tokenizer, max_new_tokens=8))
        """
    )
    result = python_without_lmforge(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [golden_text("ae_llm", QUESTIONS[0])]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()  # and with lmforge
    assert model.answer_question(QUESTIONS[1], AutoTokenizer.from_pretrained(folder), 8) == golden_text(
        "ae_llm", QUESTIONS[1]
    )
