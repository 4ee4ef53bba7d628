"""`transformers.pipeline` on saved lmforge folders: text-generation for the causal models, and the folders' own
text2text-generation (AE-LLM) and summarization (LatentReasoner) pipelines, which transformers 5 no longer has."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from lmforge.inference import GenerationSettings, TextGenerator

from .conftest import python_without_lmforge
from .saved_models import LATENT_TEXT_A, LATENT_TEXT_B, save_ae_llm, save_char_transformer, save_latent_reasoner


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    return {
        "char_transformer": save_char_transformer(root / "char_transformer"),
        "ae_llm": save_ae_llm(root / "ae_llm"),
        "latent_reasoner": save_latent_reasoner(root / "latent_reasoner"),
    }


@pytest.mark.parametrize("model_type", ["aksis", "char_transformer"])
def test_text_generation_pipeline_matches_generate(model_type: str, trained_aksis_dir: Path, saved: dict) -> None:
    folder = trained_aksis_dir if model_type == "aksis" else saved["char_transformer"]
    generator = pipeline("text-generation", model=str(folder), trust_remote_code=True)
    [answer] = generator("First Citizen:", max_new_tokens=12, do_sample=False)
    expected = TextGenerator.from_pretrained(folder).generate(
        "First Citizen:", GenerationSettings(max_new_tokens=12, do_sample=False)
    )
    assert answer["generated_text"] == "First Citizen:" + expected


def test_ae_llm_text2text_generation_pipeline(saved: dict) -> None:
    folder = saved["ae_llm"]
    answerer = pipeline("text2text-generation", model=str(folder), trust_remote_code=True)
    assert type(answerer).__name__ == "AELLMText2TextGenerationPipeline"
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for question in ("who wrote hamlet?", "what is the capital of france?"):
        expected = model.answer_question(question, tokenizer, max_new_tokens=6)
        assert answerer(question, max_new_tokens=6) == [{"generated_text": expected}]
    batch = answerer(["who wrote hamlet?", "paris?"], max_new_tokens=4)
    assert len(batch) == 2 and all(isinstance(item[0]["generated_text"], str) for item in batch)


def test_latent_reasoner_summarization_pipeline_reads_and_writes_with_two_tokenizers(saved: dict) -> None:
    folder = saved["latent_reasoner"]
    summarizer = pipeline("summarization", model=str(folder), trust_remote_code=True)
    assert type(summarizer).__name__ == "LatentReasonerSummarizationPipeline"
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    encoder_tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="encoder_tokenizer")
    decoder_tokenizer = AutoTokenizer.from_pretrained(folder)

    def summary(text: str) -> str:
        inputs = encoder_tokenizer(text, return_tensors="pt", return_token_type_ids=False)
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        return decoder_tokenizer.decode(ids[0], skip_special_tokens=True).strip()

    [result] = summarizer(LATENT_TEXT_A, max_new_tokens=6)
    assert result == {"summary_text": summary(LATENT_TEXT_A)}
    assert result["summary_text"]  # words of the decoder vocabulary, not encoder ids
    # alpha 0 decodes from the first text's idea vector alone, alpha 1 from the second's
    for alpha, text in ((0.0, LATENT_TEXT_A), (1.0, LATENT_TEXT_B)):
        mixed = summarizer(LATENT_TEXT_A, interpolate_with=LATENT_TEXT_B, alpha=alpha, max_new_tokens=6)
        assert mixed == [{"summary_text": summary(text)}]
    with pytest.raises(ValueError, match="interpolate_with"):
        summarizer(LATENT_TEXT_A, alpha=0.5)


def test_removed_transformers_task_needs_the_folders_pipeline(saved: dict, tmp_path: Path) -> None:
    """Without `custom_pipelines` in config.json, transformers 5 refuses text2text-generation: the reason it ships."""
    bare = Path(shutil.copytree(saved["ae_llm"], tmp_path / "bare"))
    config = json.loads((bare / "config.json").read_text())
    del config["custom_pipelines"]
    (bare / "config.json").write_text(json.dumps(config))
    with pytest.raises(KeyError, match="has been removed"):
        pipeline("text2text-generation", model=str(bare), trust_remote_code=True)


def test_seq2seq_pipelines_work_without_lmforge(saved: dict, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from transformers import pipeline
        answerer = pipeline("text2text-generation", model={str(saved["ae_llm"])!r}, trust_remote_code=True)
        summarizer = pipeline("summarization", model={str(saved["latent_reasoner"])!r}, trust_remote_code=True)
        for pipe in (answerer, summarizer):
            assert type(pipe).__module__.startswith("transformers_modules."), type(pipe).__module__
        print(answerer("who wrote hamlet?", max_new_tokens=6)[0]["generated_text"])
        print(summarizer({LATENT_TEXT_A!r}, max_new_tokens=6)[0]["summary_text"])
        """
    )
    result = python_without_lmforge(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answer, summary = result.stdout.strip().splitlines()[-2:]
    model = AutoModelForSeq2SeqLM.from_pretrained(saved["ae_llm"]).eval()
    assert answer == model.answer_question("who wrote hamlet?", AutoTokenizer.from_pretrained(saved["ae_llm"]), 6)
    assert (
        summary
        == pipeline("summarization", model=str(saved["latent_reasoner"]), trust_remote_code=True)(
            LATENT_TEXT_A, max_new_tokens=6
        )[0]["summary_text"]
    )


def test_pipeline_classes_from_lmforge_match_the_folders_copies(saved: dict) -> None:
    """The classes in lmforge (what the folders' files are copied from) run the same as the loaded copies."""
    from lmforge.models.ae_llm.pipeline_ae_llm import AELLMText2TextGenerationPipeline
    from lmforge.models.latent_reasoner.pipeline_latent_reasoner import LatentReasonerSummarizationPipeline

    folder = saved["ae_llm"]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    answerer = AELLMText2TextGenerationPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    remote = pipeline("text2text-generation", model=str(folder), trust_remote_code=True)
    assert answerer("who wrote hamlet?", max_new_tokens=5) == remote("who wrote hamlet?", max_new_tokens=5)
    with pytest.raises(TypeError, match="reads text"):
        answerer.preprocess(123)

    folder = saved["latent_reasoner"]
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    summarizer = LatentReasonerSummarizationPipeline(model=model, tokenizer=AutoTokenizer.from_pretrained(folder))
    remote = pipeline("summarization", model=str(folder), trust_remote_code=True)
    kwargs = {"interpolate_with": LATENT_TEXT_B, "alpha": 0.5, "max_new_tokens": 5}
    assert summarizer(LATENT_TEXT_A, **kwargs) == remote(LATENT_TEXT_A, **kwargs)
    assert summarizer(LATENT_TEXT_A, max_new_tokens=5) == remote(LATENT_TEXT_A, max_new_tokens=5)


def test_answer_question_is_the_folders_pipeline_even_without_lmforge(saved: dict, tmp_path: Path) -> None:
    """A folder has one text path: `AELLMForConditionalGeneration.answer_question` runs the folder's own
    text2text-generation pipeline, which `save_pretrained` alone copies next to the model code."""
    folder = tmp_path / "plain"
    AutoModelForSeq2SeqLM.from_pretrained(saved["ae_llm"]).save_pretrained(folder)  # no add_remote_code
    AutoTokenizer.from_pretrained(saved["ae_llm"]).save_pretrained(folder)
    assert (folder / "pipeline_ae_llm.py").is_file()
    script = textwrap.dedent(
        f"""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        model = AutoModelForSeq2SeqLM.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
        print(model.answer_question("who wrote hamlet?", tokenizer, max_new_tokens=6))
        """
    )
    result = python_without_lmforge(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answerer = pipeline("text2text-generation", model=str(saved["ae_llm"]), trust_remote_code=True)
    assert (
        result.stdout.strip().splitlines()[-1] == answerer("who wrote hamlet?", max_new_tokens=6)[0]["generated_text"]
    )
