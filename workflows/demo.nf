#!/usr/bin/env nextflow
/*
 * Scatter-gather demo (SPEC §2).
 *
 *   GENERATE (1..N)  in parallel, each writes batch_<i>.csv
 *   ANALYZE (i)      as soon as GENERATE (i) is done, writes stats_<i>.json
 *   REPORT           after every ANALYZE, writes report.json, published to
 *                    <results_dir>/<run_id>/report.json
 *
 * The step logic lives in bin/*.py (standard-library Python, put on the task's PATH by
 * Nextflow). The service's local executor runs the same scripts, so both modes produce the
 * same report for the same run id.
 *
 *   nextflow run demo.nf -name r0123456789a --batches 3 --generate_seconds 0 --analyze_seconds 0
 */

params.batches = 5
params.max_batches = 12
params.rows = 100
params.generate_seconds = 5
params.analyze_seconds = 3
// Seeds the synthetic data; defaults to the run name (the service passes `-name <run_id>`).
params.run_id = null
params.results_dir = "${launchDir}/results"

process GENERATE {
    // With a tag the task is named `GENERATE (<batch>)`, the name the service shows.
    tag "${batch}"

    input:
    val batch
    val run_id

    output:
    tuple val(batch), path("batch_${batch}.csv")

    script:
    """
    generate.py \\
        --run-id '${run_id}' \\
        --batch ${batch} \\
        --rows ${params.rows} \\
        --seconds ${params.generate_seconds} \\
        --out batch_${batch}.csv
    """
}

process ANALYZE {
    tag "${batch}"

    input:
    tuple val(batch), path(csv)

    output:
    path "stats_${batch}.json"

    script:
    """
    analyze.py \\
        --batch ${batch} \\
        --input ${csv} \\
        --seconds ${params.analyze_seconds} \\
        --out stats_${batch}.json
    """
}

process REPORT {
    publishDir "${params.results_dir}/${run_id}", mode: 'copy', overwrite: true

    input:
    val run_id
    path stats

    output:
    path 'report.json'

    script:
    """
    report.py --run-id '${run_id}' --out report.json ${stats}
    """
}

workflow {
    def maxBatches = params.max_batches as Integer
    def batchesText = params.batches.toString()
    if (!batchesText.isInteger() || batchesText.toInteger() < 1 || batchesText.toInteger() > maxBatches) {
        error "Invalid --batches '${params.batches}': must be an integer from 1 to ${maxBatches}"
    }
    def batches = batchesText.toInteger()
    def runId = params.run_id ?: workflow.runName

    def generated = GENERATE(Channel.of(1..batches), runId)
    def stats = ANALYZE(generated)
    REPORT(runId, stats.collect())
}
