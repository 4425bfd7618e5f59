#!/usr/bin/env Rscript
# Converts modeldata's credit_data (R data) to the CSV that teeml embeds as
# ml/datasets/data/modeldata/credit_data.csv.gz. Run once, by hand:
#
#   apt-get install -y r-cran-modeldata      # Debian bookworm: 1.1.0-1
#   cd ml/datasets/data && Rscript convert_credit.R
#
# Output: a header row, one row per applicant, columns in modeldata's order,
# factors written as their level labels, NA written as an empty field, no
# row names; then gzip -9 -n for a reproducible archive.
data(credit_data, package = "modeldata")
cat("modeldata", as.character(packageVersion("modeldata")),
    "credit_data:", nrow(credit_data), "rows x", ncol(credit_data), "columns\n")
str(credit_data)
out <- "modeldata/credit_data.csv"
write.csv(credit_data, out, row.names = FALSE, na = "")
system2("gzip", c("-9", "-n", "-f", out))
